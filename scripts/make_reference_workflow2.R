# Reference values for the second set of workflow features, from metafor 3.8-1 and
# clubSandwich 0.5.8, one JSON file per feature under tests/fixtures/workflow2/:
#
#   formula.json    relevel() reference levels and R's names; redundant (aliased) predictors that
#                   rma.mv drops with "Redundant predictors dropped from the model."
#   wald.json       anova(fit, btt=) and anova(fit, X=) (model-based Wald tests of sets and linear
#                   combinations of coefficients); clubSandwich's Wald_test (HTZ) with
#                   constrain_zero() and a constraint matrix, and linear_contrast() (CR2,
#                   Satterthwaite), plus the same through metafor's anova(robust(..., clubSandwich=TRUE))
#   influence.json  rstudent() and dfbetas() per row and per cluster, hatvalues(), ranef()
#   r2.json         Nakagawa & Schielzeth's marginal and conditional R2 as orchaRd's r2_ml computes
#                   it (orchaRd is not in Debian, so its R2_calc formula is evaluated here on the
#                   fitted model: fix = var(X b) with var() R's sample variance (n - 1);
#                   R2_marginal = fix / (fix + sum(sigma2)); R2_conditional = (fix + sum(sigma2) -
#                   sigma2[level with the most groups]) / (fix + sum(sigma2))), next to the
#                   proportional reduction of each sigma2 against the intercept-only model.
#
# Every model is fitted with metafor's optimiser tightened
# (optim/BFGS, reltol 1e-15), as scripts/verify_tight_optimum.R does: metafor's default nlminb
# stop leaves sigma2 ~1e-6 relative short of the optimum, and leave-one-out refits and ratios of
# two fits magnify that. metafor passes the fit's control on to its leave-one-out refits.
#
# Usage (from the repository root): Rscript scripts/make_reference_workflow2.R
suppressPackageStartupMessages({library(metafor); library(clubSandwich); library(jsonlite)})
ref <- "tests/fixtures/reference/data/"
outdir <- "tests/fixtures/workflow2"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
src <- paste0("metafor ", packageVersion("metafor"), ", clubSandwich ",
              packageVersion("clubSandwich"), ", ", R.version.string)
tight <- list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-15, maxit = 10000)

assink <- read.csv(paste0(ref, "assink2016.csv"))             # Assink & Wibbelink (2016)
konst <- read.csv(paste0(ref, "konstantopoulos2011.csv"))     # Konstantopoulos (2011)
alliance <- read.csv(paste0(ref, "alliance_like.csv"))        # SIMULATED data
datasets <- list(assink2016 = list(d = assink, random = ~ 1 | study/esid, cluster = "study"),
                 konstantopoulos2011 = list(d = konst, random = ~ 1 | district/school,
                                            cluster = "district"),
                 alliance_like = list(d = alliance, random = ~ 1 | study/es, cluster = "study"))

fit <- function(ds, mods = NULL, test = "z", dfs = "residual", method = "REML", control = tight,
                factors = character(0), V = NULL) {
  d <- datasets[[ds]]$d
  for (f in factors) d[[f]] <- factor(d[[f]])
  warn <- character(0)
  args <- list(yi = d$yi, V = if (is.null(V)) d$vi else V, random = datasets[[ds]]$random,
               data = d, test = test, dfs = dfs, method = method, control = control)
  if (!is.null(mods)) args$mods <- mods
  m <- withCallingHandlers(do.call(rma.mv, args),
    warning = function(w) {warn <<- c(warn, conditionMessage(w)); invokeRestart("muffleWarning")})
  m$warnings_ <- warn
  m$data_ <- d
  m
}
num <- function(x) { x <- as.numeric(x); x[!is.finite(x)] <- NA; x }
core <- function(m) list(coef_names = rownames(m$beta), beta = num(m$beta), se = num(m$se),
                         stat = num(m$zval), pval = num(m$pval),
                         df = if (m$test == "t") num(m$ddf) else NULL,
                         sigma2 = num(m$sigma2), logLik = as.numeric(logLik(m)),
                         QM = m$QM, QM_df = num(m$QMdf), QMp = m$QMp,
                         vcov = unname(as.matrix(m$vb)))
write <- function(x, name) {
  writeLines(toJSON(x, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null", null = "null"),
             file.path(outdir, name))
  cat("wrote", file.path(outdir, name), "\n")
}
spec <- function(ds, mods, test, dfs, method = "REML", extra = list())
  c(list(data = paste0(ds, ".csv"), random = deparse(datasets[[ds]]$random),
         mods = mods, test = test, dfs = dfs, method = method), extra)

# ------------------------------------------------------------------------------------------------
# 1. formulas: relevel() and redundant predictors
# ------------------------------------------------------------------------------------------------
fcases <- list(
  list(name = "assink_relevel", ds = "assink2016", mods = '~ relevel(deltype, ref = "general")',
       factors = "deltype", test = "z", dfs = "residual"),
  list(name = "assink_relevel_factor_year", ds = "assink2016",
       mods = '~ relevel(factor(deltype), ref = "overt") + year', test = "t", dfs = "contain"),
  list(name = "assink_year_x_relevel", ds = "assink2016",
       mods = '~ year * relevel(factor(deltype), ref = "general")', test = "t", dfs = "contain"),
  list(name = "assink_year_x_deltype_z", ds = "assink2016", mods = "~ year * deltype",
       test = "z", dfs = "residual"),
  list(name = "assink_year_x_deltype_t", ds = "assink2016", mods = "~ year * deltype",
       test = "t", dfs = "contain"),
  list(name = "alliance_rater_x_measure", ds = "alliance_like", mods = "~ rater * measure",
       test = "t", dfs = "contain"),
  list(name = "alliance_treatment_x_measure", ds = "alliance_like",
       mods = "~ treatment * measure", test = "z", dfs = "residual"),
  list(name = "konst_year_shift_zero", ds = "konstantopoulos2011",
       mods = "~ year + I(year - 1900) + I(0 * year)", test = "z", dfs = "residual"),
  list(name = "konst_zero_first", ds = "konstantopoulos2011", mods = "~ I(0 * year) + year",
       test = "t", dfs = "residual"),
  list(name = "assink_noint_constant", ds = "assink2016", mods = "~ 0 + deltype + I(0 * year + 2)",
       test = "z", dfs = "residual"),
  list(name = "assink_constant_next_to_intercept", ds = "assink2016",
       mods = "~ deltype + I(0 * year + 2) + year", test = "t", dfs = "contain")
)
fout <- list(source = src, control = tight, cases = list())
for (cs in fcases) {
  m <- fit(cs$ds, as.formula(cs$mods), cs$test, cs$dfs, factors = if (is.null(cs$factors))
           character(0) else cs$factors)
  full <- colnames(model.matrix(as.formula(cs$mods), m$data_))
  full[full == "(Intercept)"] <- "intrcpt"
  fout$cases[[cs$name]] <- c(spec(cs$ds, cs$mods, cs$test, cs$dfs),
                             list(warnings = m$warnings_, all_columns = full,
                                  dropped = setdiff(full, rownames(m$beta)), expect = core(m)))
}
write(fout, "formula.json")

# ------------------------------------------------------------------------------------------------
# 2. Wald tests of sets and linear combinations of coefficients
# ------------------------------------------------------------------------------------------------
anova_btt <- function(a) list(QM = num(a$QM), QM_df = num(a$QMdf), QMp = num(a$QMp),
                              btt_used = as.integer(a$btt))
anova_X <- function(a) list(estimate = num(a$Xb), se = num(a$se), stat = num(a$zval),
                            pval = num(a$pval), df = num(a$ddf), QM = num(a$QM),
                            QM_df = num(a$QMdf), QMp = num(a$QMp))
wcases <- list(
  list(name = "assink_year_x_deltype_t", ds = "assink2016", mods = "~ year * deltype", test = "t",
       dfs = "contain", btt = list(c(3, 4), c(1, 2), 2),
       pattern = list("deltype", "year"),
       X = list(rbind(c(0, 0, 1, -1, 0), c(0, 1, 0, 0, 1), c(1, 2.5, 0, 0, 0)),
                rbind(c(0, 0, 1, 0, 0), c(0, 0, 2, 0, 0)),
                c(1, 0, 0, 0, 0)),
       cr2 = FALSE),
  list(name = "assink_year_x_deltype_z", ds = "assink2016", mods = "~ year * deltype", test = "z",
       dfs = "residual", btt = list(c(3, 4), 5), pattern = list("deltype"),
       X = list(rbind(c(0, 0, 1, -1, 0), c(0, 1, 0, 0, 1))), cr2 = FALSE),
  list(name = "alliance_phase_x_treatment_z", ds = "alliance_like", mods = "~ phase * treatment",
       test = "z", dfs = "residual", btt = list(6:8, c(3, 4, 5), c(1, 3)),
       pattern = list("treatment", "phaselate:"),
       X = list(rbind(c(0, 1, 0, 0, 0, 1, 0, 0), c(0, 1, 0, 0, 0, 0, 1, 0),
                      c(0, 1, 0, 0, 0, 0, 0, 1)),
                rbind(c(0, 0, 1, -1, 0, 0, 0, 0), c(0, 0, 0, 1, -1, 0, 0, 0)),
                rbind(c(1, 1, 1, 0, 0, 1, 0, 0))),
       cr2 = TRUE),
  list(name = "alliance_phase_x_treatment_t", ds = "alliance_like", mods = "~ phase * treatment",
       test = "t", dfs = "contain", btt = list(6:8, c(3, 4, 5), c(1, 3)),
       pattern = list("treatment"),
       X = list(rbind(c(0, 1, 0, 0, 0, 1, 0, 0), c(0, 1, 0, 0, 0, 0, 1, 0),
                      c(0, 1, 0, 0, 0, 0, 0, 1)),
                rbind(c(1, 1, 1, 0, 0, 1, 0, 0))),
       cr2 = TRUE),
  list(name = "konst_year_t_residual", ds = "konstantopoulos2011", mods = "~ year", test = "t",
       dfs = "residual", btt = list(1, c(1, 2)), pattern = list(),
       X = list(rbind(c(1, 1990), c(1, 2000)), c(1, 1985), c(1985)), cr2 = TRUE),
  list(name = "konst_intercept_z", ds = "konstantopoulos2011", mods = NULL, test = "z",
       dfs = "residual", btt = list(1), pattern = list(), X = list(2, rbind(1, 3)), cr2 = TRUE)
)
wout <- list(source = src, cases = list())
for (cs in wcases) {
  m <- fit(cs$ds, if (is.null(cs$mods)) NULL else as.formula(cs$mods), cs$test, cs$dfs)
  d <- m$data_
  cl <- d[[datasets[[cs$ds]]$cluster]]
  res <- c(spec(cs$ds, cs$mods, cs$test, cs$dfs, extra = list(cluster = datasets[[cs$ds]]$cluster)),
           list(fit = core(m), btt = list(), pattern = list(), X = list()))
  for (b in cs$btt) res$btt[[length(res$btt) + 1]] <- c(list(btt = b), anova_btt(anova(m, btt = b)))
  for (s in cs$pattern) res$pattern[[length(res$pattern) + 1]] <-
    c(list(pattern = s), anova_btt(anova(m, btt = s)))
  for (L in cs$X) {
    Lm <- if (is.matrix(L)) L else rbind(L)
    res$X[[length(res$X) + 1]] <- c(list(X = unname(Lm)), anova_X(anova(m, X = L)))
  }
  if (cs$cr2) {
    res$cr2 <- list(btt = list(), X = list())
    rob <- robust(m, cluster = cl, clubSandwich = TRUE)
    for (b in cs$btt) {
      w <- Wald_test(m, constraints = constrain_zero(b), vcov = "CR2", cluster = cl, test = "HTZ")
      a <- anova(rob, btt = b)
      res$cr2$btt[[length(res$cr2$btt) + 1]] <- list(
        btt = b, QM = max(0, w$Fstat), QM_df = num(c(w$df_num, w$df_denom)), QMp = num(w$p_val),
        metafor = anova_btt(a))
    }
    for (L in cs$X) {
      Lm <- if (is.matrix(L)) L else rbind(L)
      if (ncol(Lm) != length(m$beta)) next   # clubSandwich takes full-width contrasts only
      lc <- linear_contrast(m, vcov = "CR2", cluster = cl, contrasts = Lm, test = "Satterthwaite",
                            p_values = TRUE)
      full_rank <- qr(Lm)$rank == nrow(Lm)
      w <- if (full_rank) Wald_test(m, constraints = Lm, vcov = "CR2", cluster = cl, test = "HTZ")
           else NULL
      a <- anova(rob, X = Lm)
      res$cr2$X[[length(res$cr2$X) + 1]] <- list(
        X = unname(Lm), estimate = num(lc$Est), se = num(lc$SE), df = num(lc$df),
        ci_lb = num(lc$CI_L), ci_ub = num(lc$CI_U), pval = num(lc$p_val),
        QM = if (full_rank) max(0, w$Fstat) else NA,
        QM_df = if (full_rank) num(c(w$df_num, w$df_denom)) else NA,
        QMp = if (full_rank) num(w$p_val) else NA, metafor = anova_X(a))
    }
  }
  wout$cases[[cs$name]] <- res
}
write(wout, "wald.json")

# ------------------------------------------------------------------------------------------------
# 3. case diagnostics: rstudent, dfbetas, hatvalues, ranef
# ------------------------------------------------------------------------------------------------
icases <- list(
  list(name = "konst_intercept_z", ds = "konstantopoulos2011", mods = NULL, test = "z",
       dfs = "residual", method = "REML"),
  list(name = "assink_deltype_t", ds = "assink2016", mods = "~ deltype", test = "t",
       dfs = "contain", method = "REML"),
  list(name = "alliance_phase_ml_t", ds = "alliance_like", mods = "~ phase", test = "t",
       dfs = "residual", method = "ML"),
  list(name = "alliance_che_rho06", ds = "alliance_like", mods = NULL, test = "z",
       dfs = "residual", method = "REML", rho = 0.6)
)
iout <- list(source = src, control = tight, cases = list())
for (cs in icases) {
  V <- NULL
  if (!is.null(cs$rho)) {
    d0 <- datasets[[cs$ds]]$d
    V <- vcalc(vi, cluster = study, obs = es, rho = cs$rho, data = d0)
  }
  m <- fit(cs$ds, if (is.null(cs$mods)) NULL else as.formula(cs$mods), cs$test, cs$dfs,
           method = cs$method, V = V)
  d <- m$data_
  cl <- d[[datasets[[cs$ds]]$cluster]]
  rs <- rstudent(m)
  rc <- rstudent(m, cluster = cl)
  db <- dfbetas(m)
  dbc <- dfbetas(m, cluster = cl)
  re <- ranef(m)
  ranef_out <- lapply(names(re), function(nm) {
    r <- re[[nm]]
    list(component = nm, level = rownames(r), pred = num(r$intrcpt), se = num(r$se),
         pi_lb = num(r$pi.lb), pi_ub = num(r$pi.ub))
  })
  iout$cases[[cs$name]] <- c(
    spec(cs$ds, cs$mods, cs$test, cs$dfs, cs$method,
         extra = list(cluster = datasets[[cs$ds]]$cluster, rho = cs$rho)),
    list(expect = list(
      fit = core(m),
      rstudent = list(resid = num(rs$resid), se = num(rs$se), z = num(rs$z)),
      rstudent_cluster = list(resid = num(rc$obs$resid), se = num(rc$obs$se), z = num(rc$obs$z),
                              cluster = as.character(rc$cluster$slab), X2 = num(rc$cluster$X2),
                              k = as.integer(rc$cluster$k)),
      dfbetas = lapply(as.list(db), num),
      dfbetas_cluster = c(list(cluster = rownames(dbc)), lapply(as.list(dbc), num)),
      hat = num(hatvalues(m)),
      ranef = ranef_out)))
}
write(iout, "influence.json")

# ------------------------------------------------------------------------------------------------
# 4. R2: orchaRd's r2_ml (marginal and conditional) and the proportional reduction
# ------------------------------------------------------------------------------------------------
r2_ml <- function(model) {
  # orchaRd's R2_calc (Nakagawa & Schielzeth 2013), evaluated on the fitted metafor model
  fix <- stats::var(as.numeric(as.vector(model$b) %*% t(as.matrix(model$X))))
  R2m <- fix / (fix + sum(model$sigma2))
  R2c <- (fix + sum(model$sigma2) - model$sigma2[which(model$s.nlevels.f == max(model$s.nlevels.f))]) /
    (fix + sum(model$sigma2))
  list(fix = fix, R2_marginal = R2m, R2_conditional = R2c)
}
rcases <- list(
  list(name = "assink_deltype", ds = "assink2016", mods = "~ deltype", method = "REML"),
  list(name = "assink_year_x_deltype", ds = "assink2016", mods = "~ year * deltype", method = "REML"),
  list(name = "alliance_treatment", ds = "alliance_like", mods = "~ treatment", method = "REML"),
  list(name = "alliance_phase_x_treatment_ml", ds = "alliance_like", mods = "~ phase * treatment",
       method = "ML"),
  list(name = "konst_year", ds = "konstantopoulos2011", mods = "~ year", method = "REML")
)
rout <- list(source = src, control = tight, cases = list())
for (cs in rcases) {
  m <- fit(cs$ds, as.formula(cs$mods), method = cs$method)
  m0 <- fit(cs$ds, NULL, method = cs$method)
  r <- r2_ml(m)
  rout$cases[[cs$name]] <- c(spec(cs$ds, cs$mods, "z", "residual", cs$method), list(expect = list(
    sigma2 = num(m$sigma2), sigma2_null = num(m0$sigma2), fix = r$fix,
    R2_marginal = r$R2_marginal, R2_conditional = num(r$R2_conditional),
    proportional = list(levels = num((m0$sigma2 - m$sigma2) / m0$sigma2),
                        total = (sum(m0$sigma2) - sum(m$sigma2)) / sum(m0$sigma2)))))
}
write(rout, "r2.json")
