# Reference values for a UN term whose estimate lies on the boundary of the positive
# semidefinite cone (the correlation matrix is singular): multivar_labs without study S37
# (SIMULATED data, src/mlmeta/examples/data/multivar_labs.csv). Run from the repository root:
#   Rscript scripts/make_reference_un_boundary.R
suppressMessages({library(metafor); library(jsonlite)})
d <- read.csv("src/mlmeta/examples/data/multivar_labs.csv")
d <- d[d$study != "S37", ]
V <- vcalc(vi, cluster = study, obs = seq_len(nrow(d)), rho = 0.5, data = d)
fit <- function(method, ctrl) rma.mv(yi, V, random = list(~ outcome | study, ~ outcome | lab),
  struct = c("UN", "CS"), data = d, method = method, test = "t", dfs = "contain", control = ctrl)
out <- list()
for (method in c("REML", "ML")) {
  tries <- list(default = list(), nlminb_tight = list(rel.tol = 1e-12, iter.max = 10000,
                 eval.max = 10000), bobyqa = list(optimizer = "bobyqa"),
                 hjk = list(optimizer = "hjk", tol = 1e-12, maxfeval = 100000))
  fits <- list()
  for (nm in names(tries)) {  # an optimizer that stops without convergence is left out
    f <- tryCatch(fit(method, tries[[nm]]), error = function(e) NULL)
    if (!is.null(f)) fits[[nm]] <- f
  }
  lls <- sapply(fits, function(f) as.numeric(logLik(f)))
  best <- fits[[which.max(lls)]]
  out[[method]] <- list(
    optimizer = names(fits)[which.max(lls)], logLik_by_optimizer = as.list(lls),
    tau2 = best$tau2, rho = best$rho, gamma2 = best$gamma2, phi = best$phi,
    beta = as.numeric(coef(best)), se = as.numeric(best$se), logLik = as.numeric(logLik(best)),
    G_eigenvalues = eigen(best$G)$values)
}
out$notes <- c("multivar_labs.csv without study S37; V = vcalc(vi, cluster = study, obs = seq_len(k), rho = 0.5)",
               "random = list(~ outcome | study, ~ outcome | lab), struct = c('UN', 'CS'), test = 't', dfs = 'contain'",
               "the estimate of the study-level UN correlation matrix is singular (smallest eigenvalue of G ~ 0)",
               paste("metafor", packageVersion("metafor")))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/fixtures/reference_un_boundary/multivar_labs_without_S37.json")
