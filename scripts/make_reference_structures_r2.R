# Reference values for R², the multilevel Egger test and the aggregated publication-bias
# analyses of models with general random-effects structures, from R's metafor 3.8-1 (and
# clubSandwich 0.5.8 for the CR2 Egger test).
#
# Reads the cases in tests/fixtures/reference_structures/cases/ (their data, V, R and metafor
# call; see that folder's README.md) and writes tests/fixtures/reference_structures_r2/<case>.json.
# Run from the repository root:
#
#     Rscript scripts/make_reference_structures_r2.R [case ...]
#
# Per case:
#   fit, null      the case's rma.mv fit and the same model without moderators (mods = ~ 1),
#                  both with control = list(optimizer = "nlminb", rel.tol = 1e-12): sigma2,
#                  tau2, gamma2 (NULL when the model has none)
#   r2             proportional R²: per component (null - full) / null for every sigma2 and every
#                  tau2/gamma2 (one per inner level for DIAG/HCS/UN), total on
#                  sum(sigma2) + mean(tau2) + mean(gamma2)
#   r2_marginal    f = var(X b) (denominator k - 1); total = f + sum(sigma2) + mean(tau2) +
#                  mean(gamma2); R2_marginal = f / total; R2_conditional = (total - s2_res) /
#                  total with s2_res the sigma2 of the '~ 1 | ...' term with the most levels (the
#                  last on ties). `orchard` holds orchaRd's r2_ml formula as written (its
#                  residual is the last sigma2; tau2/gamma2 left out) for comparison.
#   egger          rma.mv with sei = sqrt(diag(V)) added as the last moderator (same random
#                  effects, method, test, dfs): coef, se, stat, df, pval of sei; `robust`:
#                  clubSandwich::coef_test(egger_fit, vcov = "CR2", cluster = <cluster>) when the
#                  case has a cluster containing every random effect
#   aggregated     aggregate(escalc(yi, vi = diag(V)), cluster = <agg_cluster>, rho = 0.5), rows
#                  sorted by cluster id; rma(yi, vi) on the aggregates (tight control
#                  threshold = 1e-12), ranktest, trimfill (L0), selmodel(type = "stepfun",
#                  steps = c(0.025, 1); control reltol = 1e-15, ndeps = 1e-6), regtest
#
# Numbers are written with 17 significant digits (read back to the identical double).

suppressMessages({
  library(metafor)
  library(clubSandwich)
  library(jsonlite)
})
if (packageVersion("metafor") != "3.8.1") {
  stop("expected metafor 3.8-1, found ", as.character(packageVersion("metafor")))
}

src <- "tests/fixtures/reference_structures"
out_dir <- "tests/fixtures/reference_structures_r2"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
# case -> cluster of the aggregation, and the CR2 cluster (NA: none contains every random effect)
cases <- list(
  crossed_lab_mods_t = c(agg = "study", cr2 = NA),
  lim2014_phylo_env_z = c(agg = "article", cr2 = NA),
  berkey1998_un_t = c(agg = "trial", cr2 = "trial"),
  multivar_labs_t = c(agg = "lab", cr2 = "lab"))
RHO <- 0.5
ctrl <- list(optimizer = "nlminb", rel.tol = 1e-12, eval.max = 10000, iter.max = 10000)
ctrl_fallback <- list(optimizer = "bobyqa", rhoend = 1e-12, maxfun = 100000)
tight_rma <- list(threshold = 1e-12, maxiter = 10000)
tight_sel <- list(reltol = 1e-15, maxit = 10000, ndeps = rep(1e-6, 4))

read_V <- function(path, k) {
  lv <- read.csv(path)
  V <- matrix(0, k, k)
  V[cbind(lv$row, lv$col)] <- lv$value
  V[cbind(lv$col, lv$row)] <- lv$value
  V
}

num <- function(x) if (is.null(x)) NULL else as.numeric(unname(x))
vec <- function(x) if (is.null(x)) NULL else I(as.numeric(unname(x)))

one_case <- function(name) {
  cl <- cases[[name]]
  case <- fromJSON(file.path(src, "cases", paste0(name, ".json")), simplifyVector = TRUE)
  dat <- read.csv(file.path(src, "data", case$data))
  if (!is.null(case$escalc)) {
    e <- case$escalc
    dat <- escalc(measure = e$measure, ri = dat[[e$ri]], ni = dat[[e$ni]], data = dat)
  }
  k <- nrow(dat)
  if (!is.null(case$V)) {
    V <- read_V(file.path(src, "data", case$V), k)
    vd <- diag(V)
  } else if (!is.null(case$rho)) {
    V <- vcalc(dat$vi, cluster = dat[[case$rho$cluster]], obs = seq_len(k), rho = case$rho$value)
    vd <- diag(V)
  } else {
    V <- dat$vi
    vd <- dat$vi
  }
  dat$sei <- sqrt(vd)
  Rl <- NULL
  if (!is.null(case$R)) {
    Rl <- list()
    for (f in names(case$R)) {
      Rl[[f]] <- as.matrix(read.csv(file.path(src, "data", case$R[[f]]), row.names = 1,
                                    check.names = FALSE))
    }
  }
  random <- lapply(case$random_terms, as.formula)
  used_fallback <- character(0)
  struct <- if (is.null(case$struct)) character(0) else case$struct
  fitf <- function(mods) {
    args <- list(yi = dat$yi, V = V, data = dat, method = case$method, test = case$test,
                 dfs = case$dfs, control = ctrl, random = random)
    if (!is.null(mods)) args$mods <- as.formula(mods)
    if (length(struct)) args$struct <- struct
    if (!is.null(Rl)) args$R <- Rl
    f <- tryCatch(do.call(rma.mv, args), error = function(e) NULL)
    if (is.null(f)) {  # nlminb stopped with a false-convergence code: the tight bobyqa fit
      args$control <- ctrl_fallback
      f <- do.call(rma.mv, args)
      used_fallback <<- c(used_fallback, if (is.null(mods)) "~ 1" else mods)
    }
    f
  }
  fit <- fitf(case$mods)
  null <- fitf(NULL)
  comps <- function(f) {
    list(sigma2 = if (f$withS) num(f$sigma2) else NULL,
         tau2 = if (f$withG) num(f$tau2) else NULL,
         gamma2 = if (f$withH) num(f$gamma2) else NULL)
  }
  total <- function(f) {
    (if (f$withS) sum(f$sigma2) else 0) + (if (f$withG) mean(f$tau2) else 0) +
      (if (f$withH) mean(f$gamma2) else 0)
  }
  c1 <- comps(fit)
  c0 <- comps(null)
  all1 <- c(c1$sigma2, c1$tau2, c1$gamma2)
  all0 <- c(c0$sigma2, c0$tau2, c0$gamma2)
  r2 <- list(levels = I((all0 - all1) / all0), total = (total(null) - total(fit)) / total(null),
             sigma2_null = I(all0))
  fx <- var(as.numeric(fit$X %*% fit$b))
  tt <- fx + total(fit)
  r2m <- NULL
  if (fit$withS) {
    nl <- fit$s.nlevels
    j <- max(which(nl == max(nl)))
    r2m <- list(R2_marginal = fx / tt, R2_conditional = (tt - fit$sigma2[j]) / tt,
                var_fixed = fx, sigma2 = I(all1), residual_level = fit$s.names[j],
                orchard = list(
                  R2_marginal = fx / (fx + sum(fit$sigma2)),
                  R2_conditional = (fx + sum(fit$sigma2) - fit$sigma2[length(fit$sigma2)]) /
                    (fx + sum(fit$sigma2))))
  }
  # ---- Egger: sei as the last moderator
  emods <- if (is.null(case$mods)) "~ sei" else paste(case$mods, "+ sei")
  ef <- fitf(emods)
  p <- length(ef$beta)
  egger <- list(coef = num(ef$beta[p]), se = num(ef$se[p]), stat = num(ef$zval[p]),
                df = if (case$test == "t") num(ef$ddf[p]) else NULL, pval = num(ef$pval[p]),
                mods = emods)
  if (!is.na(cl[["cr2"]])) {
    ct <- coef_test(ef, vcov = "CR2", cluster = dat[[cl[["cr2"]]]], test = "Satterthwaite")
    egger$robust <- list(se = num(ct$SE[p]), stat = num(ct$tstat[p]), df = num(ct$df_Satt[p]),
                         pval = num(ct$p_Satt[p]), cluster = cl[["cr2"]])
  }
  # ---- aggregated publication-bias analyses
  es <- escalc(measure = "GEN", yi = dat$yi, vi = vd)
  es$cl <- dat[[cl[["agg"]]]]
  agg <- aggregate(es, cluster = es$cl, rho = RHO)
  agg <- agg[order(agg$cl), ]
  fa <- rma(yi, vi, data = agg, control = tight_rma)
  rk <- suppressWarnings(ranktest(fa))
  tf <- trimfill(fa, control = tight_rma)
  sm <- selmodel(fa, type = "stepfun", steps = c(0.025, 1), control = tight_sel)
  rt <- regtest(fa)
  aggregated <- list(
    cluster = cl[["agg"]], rho = RHO,
    aggregate = list(cluster = if (is.numeric(agg$cl)) vec(agg$cl) else I(as.character(agg$cl)),
                     yi = vec(agg$yi), vi = vec(agg$vi)),
    rma_agg = list(beta = num(fa$beta), se = num(fa$se), pval = num(fa$pval),
                   ci_lb = num(fa$ci.lb), ci_ub = num(fa$ci.ub), tau2 = num(fa$tau2)),
    ranktest = list(tau = num(rk$tau), pval = num(rk$pval)),
    trimfill = list(k0 = tf$k0, side = tf$side, beta = num(tf$beta), se = num(tf$se),
                    ci_lb = num(tf$ci.lb), ci_ub = num(tf$ci.ub), tau2 = num(tf$tau2)),
    selmodel = list(beta = num(sm$beta), se = num(sm$se), tau2 = num(sm$tau2),
                    delta = vec(sm$delta), LRT = num(sm$LRT), pval = num(sm$LRTp)),
    regtest = list(coef = num(rt$fit$beta[2]), se = num(rt$fit$se[2]), zval = num(rt$zval),
                   pval = num(rt$pval), est = num(rt$est), ci_lb = num(rt$ci.lb),
                   ci_ub = num(rt$ci.ub)))
  res <- list(case = name, generator = "scripts/make_reference_structures_r2.R",
              source = sprintf("metafor %s, clubSandwich %s, %s",
                               as.character(packageVersion("metafor")),
                               as.character(packageVersion("clubSandwich")), R.version.string),
              fit = c1, null = c0, r2 = r2, r2_marginal = r2m, egger = egger,
              aggregated = aggregated,
              fallback_bobyqa = I(used_fallback),
              notes = c("fits: control = list(optimizer = 'nlminb', rel.tol = 1e-12); the fits in fallback_bobyqa (nlminb reported false convergence) with control = list(optimizer = 'bobyqa', rhoend = 1e-12)",
                        "null: the same rma.mv without mods",
                        "egger: rma.mv with mods = <mods> + sei, sei = sqrt(diag(V))",
                        "aggregated: aggregate(escalc(yi, vi = diag(V)), cluster, rho = 0.5); rma/trimfill control threshold = 1e-12; selmodel control reltol = 1e-15, ndeps = 1e-6"))
  writeLines(toJSON(res, auto_unbox = TRUE, digits = I(17), null = "null", na = "null",
                    pretty = TRUE),
             file.path(out_dir, paste0(name, ".json")))
  cat(name, "done\n")
}

args <- commandArgs(trailingOnly = TRUE)
for (nm in if (length(args)) args else names(cases)) one_case(nm)
