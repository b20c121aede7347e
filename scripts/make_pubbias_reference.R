# Reference values for mlmeta.pubbias from R's metafor 3.8-1 (R 4.2.2).
#
# Writes tests/fixtures/pubbias/*.json and the simulated data sets tests/fixtures/pubbias/data/
# simbias.csv (clear small-study bias: trim-and-fill imputes 4 studies, delta ~ 0.1) and
# simboundary.csv (selected as well, but the ML/REML tau2 of the aggregates is 0). Run from the
# repository root:
#
#     Rscript scripts/make_pubbias_reference.R
#
# Deterministic (set.seed). The test suite only reads the JSON/CSV files; it never runs R.
#
# For every data set and rho in {0.5, 0.8} (molloy2014: no aggregation, rho = null) a case file
# holds, computed on the per-cluster aggregated data (rows sorted by cluster id):
#   default$aggregate  aggregate(escalc(yi=, vi=), cluster=, rho=)          (struct "CS", weighted)
#                      (yi_17g / vi_17g: the same as strings with 17 significant digits, exact)
#   default$rma_agg    rma(yi, vi, data = agg)                              (REML)
#   default$ranktest   ranktest(rma_agg)
#   default$ranktest_signif12  ranktest(signif(yi, 12), signif(vi, 12)): ties that rounding
#                      error broke in the aggregation are restored (see simboundary_rho50)
#   default$trimfill   trimfill(rma_agg)                                    (estimator L0)
#   default$selmodel   selmodel(rma_agg, type = "stepfun", steps = c(0.025, 1))
#   default$regtest    regtest(rma_agg): Egger's test on the aggregates (predictor sei, z test)
# with metafor's default control, and `tight` = the same calls with metafor's optimisers tightened:
#   rma / trimfill: control = list(threshold = 1e-12, maxiter = 10000)
#     (metafor's Fisher scoring stops when |tau2 change| < 1e-5, so its default tau2 can be off
#      by ~1e-4 relative)
#   selmodel:       the ML refit with the tight rma control, and control = list(reltol = 1e-15,
#                   maxit = 10000, ndeps = rep(1e-6, 4)) for optim/BFGS. optim's BFGS uses a
#                   central-difference gradient with step ndeps = 1e-3 on the transformed scale
#                   (beta, log tau2, logit(delta/100)); with that step the point where the numerical
#                   gradient vanishes is not the maximum (delta off by up to ~5e-5 relative), and
#                   the default reltol 1e-8 stops early as well.
# `check_nm` is the tight selmodel refitted with a derivative-free optimiser (Nelder-Mead, reltol
# 1e-15) as an independent check that the tight numbers are the optimum, not an optimiser artefact.
# `extras` (simbias only, tight control): trimfill with estimator R0 / Q0, side = "right", and
# method ML / DL / EE; selmodel with steps c(0.025, 0.5, 1), two-sided p-values (steps c(0.05, 1)),
# and on the equal-effects model (tau2 fixed at 0); regtest with predictor "vi", with the
# Knapp-Hartung test, on the equal-effects model, and with the sample-size predictor
# "sqrtninv" (ni = the study's sample size, carried through aggregate()).

suppressMessages(library(metafor))
suppressMessages(library(jsonlite))
if (packageVersion("metafor") != "3.8.1")
  stop("expected metafor 3.8-1, found ", as.character(packageVersion("metafor")))

out_dir  <- file.path("tests", "fixtures", "pubbias")
data_dir <- file.path(out_dir, "data")
dir.create(data_dir, recursive = TRUE, showWarnings = FALSE)
ref_data <- file.path("tests", "fixtures", "reference", "data")

tight_rma <- list(threshold = 1e-12, maxiter = 10000)
tight_sel <- list(reltol = 1e-15, maxit = 10000, ndeps = rep(1e-6, 4))

# ------------------------------------------------------------------------------------------------
# simulated data with clear small-study bias: 30 studies with 1-3 correlated effects each
# (within-study sampling correlation 0.5); a study is published when its mean effect is
# significant (one-sided p < .025) or otherwise with probability 0.15.
# ------------------------------------------------------------------------------------------------
simulate_biased <- function(seed) {
  set.seed(seed)
  rows <- list()
  s <- 0
  while (s < 30) {
    n <- round(exp(runif(1, log(20), log(300))))
    m <- sample(1:3, 1)
    theta <- rnorm(1, 0.15, 0.1)
    vi <- rep(4 / n, m)
    S <- 0.5 * outer(sqrt(vi), sqrt(vi)) + diag(0.5 * vi, m)
    yi <- theta + c(MASS::mvrnorm(1, rep(0, m), S))
    p <- pnorm(mean(yi) / sqrt(mean(vi)), lower.tail = FALSE)
    if (p < 0.025 || runif(1) < 0.15) {
      s <- s + 1
      rows[[s]] <- data.frame(study = s, es = seq_len(m), ni = n, yi = yi, vi = vi)
    }
  }
  do.call(rbind, rows)
}
# write with 17 significant digits so the doubles read back identically
write_sim <- function(seed, file) {
  sim <- simulate_biased(seed)
  sim$yi <- sprintf("%.17g", sim$yi)
  sim$vi <- sprintf("%.17g", sim$vi)
  write.csv(sim, file.path(data_dir, file), row.names = FALSE, quote = FALSE)
}
# seed 3: trim-and-fill imputes 4 studies, delta ~ 0.1
write_sim(3, "simbias.csv")
# seed 4: also selected, but the (RE)ML tau2 of the aggregated data is 0 (boundary)
write_sim(4, "simboundary.csv")

# ------------------------------------------------------------------------------------------------
num <- function(x) as.numeric(x)

rma_block <- function(fit) {
  list(beta = num(fit$beta), se = num(fit$se), zval = num(fit$zval), pval = num(fit$pval),
       ci_lb = num(fit$ci.lb), ci_ub = num(fit$ci.ub), tau2 = num(fit$tau2),
       se_tau2 = num(fit$se.tau2), k = fit$k, logLik = num(logLik(fit)), method = fit$method)
}

trimfill_block <- function(tf) {
  list(k0 = tf$k0, side = tf$side, se_k0 = num(tf$se.k0), beta = num(tf$beta), se = num(tf$se),
       zval = num(tf$zval), pval = num(tf$pval), ci_lb = num(tf$ci.lb), ci_ub = num(tf$ci.ub),
       tau2 = num(tf$tau2), k = tf$k, yi_filled = I(num(tf$yi)), vi_filled = I(num(tf$vi)),
       fill = I(as.logical(tf$fill)), estimator = tf$k0.est, p_k0 = num(tf$p.k0))
}

regtest_block <- function(rt) {
  list(coef = num(rt$fit$beta[2]), se = num(rt$fit$se[2]), zval = num(rt$zval),
       pval = num(rt$pval), df = num(rt$dfs), est = if (is.null(rt$est)) NULL else num(rt$est),
       ci_lb = if (is.null(rt$ci.lb)) NULL else num(rt$ci.lb),
       ci_ub = if (is.null(rt$ci.ub)) NULL else num(rt$ci.ub), tau2 = num(rt$fit$tau2),
       k = rt$fit$k, predictor = rt$predictor, test = rt$fit$test)
}

selmodel_block <- function(sm) {
  list(beta = num(sm$beta), se = num(sm$se), zval = num(sm$zval), pval_beta = num(sm$pval),
       ci_lb = num(sm$ci.lb), ci_ub = num(sm$ci.ub), tau2 = num(sm$tau2),
       se_tau2 = num(sm$se.tau2), delta = I(num(sm$delta)), se_delta = I(num(sm$se.delta)),
       LRT = num(sm$LRT), LRT_df = sm$LRTdf, pval = num(sm$LRTp), ll = num(sm$ll),
       ll0 = num(sm$ll0), LRT_tau2 = num(sm$LRT.tau2), steps = I(num(sm$steps)),
       ptable = I(as.integer(sm$ptable$k)))
}

# further options (tight control only), for the simulated data: other trim-and-fill estimators,
# a given side, other tau2 estimators; selection models with three intervals, two-sided
# p-values, and based on an equal-effects model (tau2 fixed at 0)
extra_blocks <- function(agg) {
  sel_ctl <- function(npar) c(tight_sel[c("reltol", "maxit")], list(ndeps = rep(1e-6, npar)))
  fitt <- rma(yi, vi, data = agg, control = tight_rma)
  fml  <- rma(yi, vi, data = agg, method = "ML", control = tight_rma)
  fdl  <- rma(yi, vi, data = agg, method = "DL")
  fee  <- rma(yi, vi, data = agg, method = "EE")
  list(
    trimfill_R0 = trimfill_block(trimfill(fitt, estimator = "R0", control = tight_rma)),
    trimfill_Q0 = trimfill_block(trimfill(fitt, estimator = "Q0", control = tight_rma)),
    trimfill_right = trimfill_block(trimfill(fitt, side = "right", control = tight_rma)),
    trimfill_ML = trimfill_block(trimfill(fml, control = tight_rma)),
    trimfill_DL = trimfill_block(trimfill(fdl)),
    trimfill_EE = trimfill_block(trimfill(fee)),
    selmodel_3step = selmodel_block(selmodel(fitt, type = "stepfun", steps = c(0.025, 0.5, 1),
                                             control = sel_ctl(5))),
    selmodel_twosided = selmodel_block(selmodel(fitt, type = "stepfun", steps = c(0.05, 1),
                                                alternative = "two.sided", control = sel_ctl(4))),
    selmodel_EE = selmodel_block(selmodel(fee, type = "stepfun", steps = c(0.025, 1),
                                          control = sel_ctl(4))),
    regtest_vi = regtest_block(regtest(fitt, predictor = "vi")),
    regtest_knha = regtest_block(regtest(fitt, test = "knha")),
    regtest_EE = regtest_block(regtest(fee)),
    regtest_sqrtninv = c(regtest_block(regtest(fitt, ni = agg$ni, predictor = "sqrtninv")),
                         list(ni = I(num(agg$ni)))))
}

run_case <- function(case, data_file, d, cluster, rho, extras = FALSE) {
  dat <- escalc(yi = yi, vi = vi, data = d)
  if (is.null(cluster)) {
    agg <- dat
    aggblock <- NULL
  } else {
    agg <- aggregate(dat, cluster = dat[[cluster]], rho = rho)
    agg <- agg[order(agg[[cluster]]), ]      # metafor orders by first appearance; sort by id
    aggblock <- list(cluster = I(num(agg[[cluster]])), yi = I(num(agg$yi)), vi = I(num(agg$vi)),
                     yi_17g = I(sprintf("%.17g", agg$yi)), vi_17g = I(sprintf("%.17g", agg$vi)))
  }
  fit  <- rma(yi, vi, data = agg)
  fitt <- rma(yi, vi, data = agg, control = tight_rma)
  rk <- suppressWarnings(ranktest(fit))
  ystar <- function(y, v) (y - weighted.mean(y, 1 / v)) / sqrt(v - 1 / sum(1 / v))
  ties <- anyDuplicated(agg$vi) > 0 || anyDuplicated(ystar(agg$yi, agg$vi)) > 0
  # the same on yi, vi rounded to 12 significant digits: mathematically equal aggregates can
  # differ in the last bits (e.g. 4/26 * 2/3 vs 4/39), which breaks ties by rounding error
  yr <- signif(as.numeric(agg$yi), 12)
  vr <- signif(as.numeric(agg$vi), 12)
  rk12 <- suppressWarnings(ranktest(yr, vr))
  ties12 <- anyDuplicated(vr) > 0 || anyDuplicated(ystar(yr, vr)) > 0
  tf  <- trimfill(fit)
  tft <- trimfill(fitt, control = tight_rma)
  sm  <- selmodel(fit, type = "stepfun", steps = c(0.025, 1))
  smt <- selmodel(fitt, type = "stepfun", steps = c(0.025, 1), control = tight_sel)
  smn <- selmodel(fitt, type = "stepfun", steps = c(0.025, 1),
                  control = list(optimizer = "Nelder-Mead", reltol = 1e-15, maxit = 10000))
  res <- list(
    case = case, data = data_file, yi = "yi", vi = "vi", cluster = cluster, rho = rho,
    generator = "scripts/make_pubbias_reference.R",
    R = R.version.string, metafor = as.character(packageVersion("metafor")),
    default = list(aggregate = aggblock, rma_agg = rma_block(fit),
                   ranktest = list(tau = num(rk$tau), pval = num(rk$pval), ties = ties),
                   ranktest_signif12 = list(tau = num(rk12$tau), pval = num(rk12$pval),
                                            ties = ties12),
                   trimfill = trimfill_block(tf), selmodel = selmodel_block(sm),
                   regtest = regtest_block(regtest(fit))),
    tight = list(rma_agg = rma_block(fitt), trimfill = trimfill_block(tft),
                 selmodel = selmodel_block(smt), regtest = regtest_block(regtest(fitt))),
    check_nm = list(selmodel = selmodel_block(smn)),
    control_tight = list(rma = tight_rma, selmodel = tight_sel))
  if (extras) res$extras <- extra_blocks(agg)
  path <- file.path(out_dir, paste0(case, ".json"))
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                    na = "null"), path)
  cat("wrote", path, "\n")
}

sets <- list(
  list(name = "alliance_like", file = "reference/data/alliance_like.csv", cluster = "study"),
  list(name = "assink2016", file = "reference/data/assink2016.csv", cluster = "study"),
  list(name = "konstantopoulos2011", file = "reference/data/konstantopoulos2011.csv",
       cluster = "district"),
  list(name = "simbias", file = "pubbias/data/simbias.csv", cluster = "study"),
  list(name = "simboundary", file = "pubbias/data/simboundary.csv", cluster = "study"))

for (s in sets) {
  d <- read.csv(file.path("tests", "fixtures", s$file))
  for (rho in c(0.5, 0.8))
    run_case(sprintf("%s_rho%02d", s$name, round(100 * rho)), s$file, d, s$cluster, rho,
             extras = s$name == "simbias")
}
d <- read.csv(file.path(ref_data, "molloy2014.csv"))
run_case("molloy2014", "reference/data/molloy2014.csv", d, NULL, NULL)

# ------------------------------------------------------------------------------------------------
# Multilevel Egger / PET-PEESE with the sample-size predictor sqrt(1/n~) (Pustejovsky & Rodgers
# 2019), n~ = n1 n2 / (n1 + n2) (two groups) or the total n: rma.mv with the predictor as
# moderator. Writes tests/fixtures/pubbias/egger/egger_n.json and the simulated SMD data set
# tests/fixtures/pubbias/data/simsmd.csv (25 studies with 1-4 effect sizes, true mean 0.3,
# no selection).
# ------------------------------------------------------------------------------------------------
set.seed(20240520)
rows <- list()
for (s in 1:25) {
  m <- sample(1:4, 1)
  n1 <- sample(10:120, 1); n2 <- sample(10:120, 1)
  u <- rnorm(1, 0, 0.2)
  for (j in seq_len(m)) {
    delta <- 0.3 + u + rnorm(1, 0, 0.1)
    x1 <- rnorm(n1, delta, 1); x2 <- rnorm(n2, 0, 1)
    rows[[length(rows) + 1]] <- data.frame(study = s, es = j, n1i = n1, n2i = n2,
                                           m1i = mean(x1), sd1i = sd(x1),
                                           m2i = mean(x2), sd2i = sd(x2))
  }
}
simsmd <- do.call(rbind, rows)
simsmd <- escalc("SMD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i,
                 data = simsmd)
simsmd_out <- data.frame(simsmd)
for (v in c("m1i", "sd1i", "m2i", "sd2i", "yi", "vi"))
  simsmd_out[[v]] <- sprintf("%.17g", simsmd_out[[v]])
write.csv(simsmd_out, file.path(data_dir, "simsmd.csv"), row.names = FALSE, quote = FALSE)

coef_block <- function(fit, j) {
  list(beta = num(fit$beta[j]), se = num(fit$se[j]), zval = num(fit$zval[j]),
       pval = num(fit$pval[j]), ci_lb = num(fit$ci.lb[j]), ci_ub = num(fit$ci.ub[j]),
       df = if (is.null(fit$ddf) || all(is.na(fit$ddf))) NULL else num(fit$ddf[j]))
}
egger_case <- function(name, data_file, d, random, npred, test, dfs = "residual") {
  d$pet <- npred; d$peese <- npred^2; d$sei <- sqrt(d$vi)
  args <- list(yi = d$yi, V = d$vi, random = random, data = d, test = test,
               control = list(rel.tol = 1e-10, iter.max = 10000))
  if (test == "t") args$dfs <- dfs
  f_egger <- do.call(rma.mv, c(args, list(mods = ~ pet)))
  f_peese <- do.call(rma.mv, c(args, list(mods = ~ peese)))
  f_sei <- do.call(rma.mv, c(args, list(mods = ~ sei)))
  list(name = name, data = data_file, test = test, dfs = dfs,
       egger = coef_block(f_egger, 2), pet = coef_block(f_egger, 1),
       peese = coef_block(f_peese, 1), peese_slope = coef_block(f_peese, 2),
       egger_sei = coef_block(f_sei, 2),
       logLik = list(egger = num(logLik(f_egger)), peese = num(logLik(f_peese)),
                     egger_sei = num(logLik(f_sei))))
}
dir.create(file.path(out_dir, "egger"), showWarnings = FALSE)
al <- read.csv(file.path(ref_data, "alliance_like.csv"))
egger_cases <- list(
  egger_case("simsmd_pair_z", "pubbias/data/simsmd.csv", simsmd, list(~ 1 | study/es),
             sqrt(1 / simsmd$n1i + 1 / simsmd$n2i), "z"),
  egger_case("simsmd_pair_t", "pubbias/data/simsmd.csv", simsmd, list(~ 1 | study/es),
             sqrt(1 / simsmd$n1i + 1 / simsmd$n2i), "t", "contain"),
  egger_case("alliance_total_n_t", "reference/data/alliance_like.csv", al,
             list(~ 1 | study/es), sqrt(1 / al$ni), "t", "contain"))
writeLines(toJSON(list(generator = "scripts/make_pubbias_reference.R", R = R.version.string,
                       metafor = as.character(packageVersion("metafor")),
                       cases = egger_cases),
                  auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
           file.path(out_dir, "egger", "egger_n.json"))
cat("wrote", file.path(out_dir, "egger", "egger_n.json"), "\n")
