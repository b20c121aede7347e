# R2 compares two fits' variance components, so it magnifies how precisely each fit was
# optimised: metafor's default nlminb stopping rule leaves sigma2 accurate to ~1e-6 relative,
# which moves R2 by ~1e-5 relative. This script refits the moderator cases of the reference set
# with metafor's own optimiser tightened (optim/BFGS, reltol 1e-15) and writes the variance
# components, logLik and R2 to tests/fixtures/reference_tight/r2_tight.json; the test suite
# checks mlmeta's R2 against these numbers and the published reference R2 against its own sigma2.
# Usage (from the repository root): Rscript scripts/verify_tight_optimum.R
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
ref <- "tests/fixtures/reference/"
tight <- list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-15, maxit = 10000)
out <- list()
for (f in sort(list.files(paste0(ref, "cases"), pattern = "\\.json$", full.names = TRUE))) {
  cs <- fromJSON(f, simplifyVector = FALSE)
  if (is.null(cs$mods) || is.null(cs$expect$R2)) next
  d <- read.csv(paste0(ref, "data/", cs$data))
  mods <- as.formula(cs$mods)
  vars <- all.vars(mods)
  d <- d[complete.cases(d[, vars, drop = FALSE]), ]
  d$yi_ <- d[[cs$yi]]; d$vi_ <- d[[cs$vi]]
  random <- as.formula(paste("~ 1 |", paste(unlist(cs$random), collapse = "/")))
  f0 <- rma.mv(yi_, vi_, random = random, data = d, method = cs$method, control = tight)
  f1 <- rma.mv(yi_, vi_, random = random, mods = mods, data = d, method = cs$method, control = tight)
  out[[cs$case]] <- list(sigma2 = f1$sigma2, sigma2_null = f0$sigma2,
                         logLik = as.numeric(logLik(f1)), logLik_null = as.numeric(logLik(f0)),
                         R2 = list(levels = (f0$sigma2 - f1$sigma2) / f0$sigma2,
                                   total = (sum(f0$sigma2) - sum(f1$sigma2)) / sum(f0$sigma2)))
}
dir.create("tests/fixtures/reference_tight", showWarnings = FALSE)
writeLines(toJSON(list(source = paste0("metafor ", packageVersion("metafor"), ", ", R.version.string),
                       control = tight, cases = out), auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "tests/fixtures/reference_tight/r2_tight.json")
cat("wrote", length(out), "cases\n")
