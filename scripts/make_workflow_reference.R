# Reference values for workflow functions not covered by the per-case blocks:
# HTZ Wald test of several coefficients, Egger with CR2, PET/PEESE, the integral
# back-transform of a prediction, model comparison by LRT with ML refits, and formula features.
# Writes tests/fixtures/workflow/workflow.json. Usage (repo root): Rscript scripts/make_workflow_reference.R
suppressPackageStartupMessages({library(metafor); library(clubSandwich); library(jsonlite)})
d <- read.csv("tests/fixtures/reference/data/alliance_like.csv")   # SIMULATED data
k <- read.csv("tests/fixtures/reference/data/konstantopoulos2011.csv")
out <- list(source = paste0("metafor ", packageVersion("metafor"), ", clubSandwich ",
                            packageVersion("clubSandwich"), ", ", R.version.string))

# 1. HTZ Wald test of the two treatment contrasts (coefficients 2 and 3 of 4)
f <- rma.mv(yi, vi, random = ~ 1 | study/es, mods = ~ treatment, data = d, test = "t", dfs = "contain")
w <- Wald_test(f, constraints = constrain_zero(2:3), vcov = "CR2", cluster = d$study, test = "HTZ")
out$htz_treatment_2_3 <- list(Fstat = w$Fstat, df_num = w$df_num, df_denom = w$df_denom, p_val = w$p_val)

# 2. Egger test with CR2 (sqrt(vi) added to the intercept-only model)
fe <- rma.mv(yi, vi, random = ~ 1 | study/es, mods = ~ sqrt(vi), data = d, test = "t", dfs = "contain")
ct <- coef_test(fe, vcov = "CR2", cluster = d$study, test = "Satterthwaite")
out$egger_cr2 <- list(coef = ct$beta[2], se = ct$SE[2], stat = ct$tstat[2], df = ct$df_Satt[2],
                      pval = ct$p_Satt[2])

# 3. PET and PEESE intercepts (konstantopoulos2011)
pet <- rma.mv(yi, vi, random = ~ 1 | district/school, mods = ~ sqrt(vi), data = k, test = "t", dfs = "contain")
peese <- rma.mv(yi, vi, random = ~ 1 | district/school, mods = ~ vi, data = k, test = "t", dfs = "contain")
out$pet <- list(estimate = pet$beta[1], se = pet$se[1], ci_lb = pet$ci.lb[1], ci_ub = pet$ci.ub[1],
                pval = pet$pval[1], slope = pet$beta[2], slope_pval = pet$pval[2])
out$peese <- list(estimate = peese$beta[1], se = peese$se[1], ci_lb = peese$ci.lb[1],
                  ci_ub = peese$ci.ub[1], pval = peese$pval[1], slope = peese$beta[2],
                  slope_pval = peese$pval[2])

# 4. Integral back-transform of the pooled Fisher z (metafor's transf.ztor.int)
f0 <- rma.mv(yi, vi, random = ~ 1 | study/es, data = d, test = "t", dfs = "contain")
p <- predict(f0, transf = transf.ztor.int, targs = list(tau2 = sum(f0$sigma2)))
out$predict_ztor_int <- list(pred = p$pred, ci_lb = p$ci.lb, ci_ub = p$ci.ub, pi_lb = p$pi.lb, pi_ub = p$pi.ub)

# 5. Model comparison with different fixed effects: both models by ML
m1 <- rma.mv(yi, vi, random = ~ 1 | study/es, mods = ~ rater, data = d, method = "ML")
m0 <- rma.mv(yi, vi, random = ~ 1 | study/es, data = d, method = "ML")
a <- anova(m1, m0)
out$anova_rater_ml <- list(LRT = a$LRT, df = a$parms.f - a$parms.r, pval = a$pval,
                           AIC = c(a$fit.stats.f[["AIC"]], a$fit.stats.r[["AIC"]]),
                           BIC = c(a$fit.stats.f[["BIC"]], a$fit.stats.r[["BIC"]]),
                           AICc = c(a$fit.stats.f[["AICc"]], a$fit.stats.r[["AICc"]]),
                           logLik = c(a$fit.stats.f[["ll"]], a$fit.stats.r[["ll"]]))
# 6. R's model.matrix names and order for formula features (interactions, poly, I(), scale)
out$formulas <- list()
for (f in c("~ phase * rater", "~ poly(ni, 2)", "~ log(ni) + I(ni^2)", "~ 0 + phase:rater",
            "~ rater:ni", "~ factor(phase) + scale(ni)")) {
  m <- rma.mv(yi, vi, random = ~ 1 | study/es, mods = as.formula(f), data = d)
  out$formulas[[f]] <- list(coef_names = rownames(m$beta), beta = as.vector(m$beta),
                            se = m$se, logLik = as.numeric(logLik(m)))
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = I(17), pretty = TRUE), "tests/fixtures/workflow/workflow.json")
cat("wrote tests/fixtures/workflow/workflow.json\n")
