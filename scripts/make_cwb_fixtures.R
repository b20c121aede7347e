# Reference values for mlmeta's cluster wild bootstrap (mlmeta.analyses.cwb) from R's wildmeta.
#
# Writes tests/fixtures/cwb/cases.json. Run from the repository root:
#
#     Rscript scripts/make_cwb_fixtures.R
#
# Needs R with metafor 3.8-1, clubSandwich 0.5.8, jsonlite, robumeta (Debian: r-cran-*) and
# wildmeta 0.3.2 (not in Debian: installed from its source with R CMD INSTALL).
#
# For each case the script records wildmeta's Wald_test_cwb() result: the statistic of the
# original fit ("original"), the statistic of every bootstrap replicate ("boot") and the
# p-value, together with what is needed to reproduce the same replicates without R's random
# numbers: the auxiliary weight of every cluster in every replicate ("weights", R x clusters,
# clusters in the order of R's factor levels), the null model's fitted values and the (adjusted)
# null residuals. wildmeta draws the weights inside run_cwb() (through future.apply when it is
# installed, with its own parallel-safe streams); they are recovered here from the bootstrap
# outcomes of run_cwb(f = NULL) with the same seed: y* = fitted + eta[cluster] * resid, and
# the script checks that fitted + eta[cluster] * resid reproduces every y* to 1e-12.
#
# Doubles are written by jsonlite with 15 significant digits; the tests compare with tolerances
# far above that rounding.

suppressMessages({
  library(metafor)
  library(clubSandwich)
  library(wildmeta)
  library(jsonlite)
})

out_dir <- file.path("tests", "fixtures", "cwb")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)
data_dir <- file.path("tests", "fixtures", "reference", "data")

num <- function(x) I(as.numeric(x))

make_case <- function(name, data_file, random, mods, rho, coefs, R, seed, dist, adjust,
                      type = "CR0", test = "Naive-F", note = "") {
  dat <- read.csv(file.path(data_dir, data_file))
  rand <- as.formula(random)
  mform <- as.formula(mods)
  if (is.null(rho)) {
    full <- eval(bquote(rma.mv(yi, V = vi, random = .(rand), mods = .(mform), data = dat,
                               method = "REML", sparse = FALSE)))
  } else {
    Vmat <- vcalc(dat$vi, cluster = dat[[all.vars(rand)[1]]], obs = seq_len(nrow(dat)), rho = rho)
    full <- eval(bquote(rma.mv(yi, V = Vmat, random = .(rand), mods = .(mform), data = dat,
                               method = "REML", sparse = FALSE)))
  }
  cn <- names(coef(full))
  C_mat <- constrain_zero(match(coefs, cn), coefs = coef(full))

  res <- Wald_test_cwb(full_model = full, constraints = C_mat, R = R,
                       auxiliary_dist = dist, adjust = adjust, type = type, test = test,
                       seed = seed)

  # the same replicates' outcomes, to recover the weights
  null_model <- wildmeta:::estimate_null(full, C_mat = C_mat)
  cluster <- clubSandwich::findCluster.rma.mv(null_model)
  ystar <- run_cwb(null_model, cluster = cluster, R = R, auxiliary_dist = dist,
                   adjust = adjust, simplify = FALSE, seed = seed)
  pred <- as.numeric(fitted(null_model))
  e <- as.numeric(residuals(null_model))
  if (adjust %in% c("CR1", "CR2", "CR3", "CR4")) {
    B <- attr(vcovCR(null_model, cluster = cluster, type = adjust), "adjustments")
    e <- unsplit(Map(function(x, y) as.vector(x %*% y), B, split(e, cluster)), cluster)
  }
  cf <- as.integer(cluster)
  nc <- nlevels(cluster)
  W <- t(vapply(ystar, function(y) {
    d <- y - pred
    vapply(seq_len(nc), function(j) {
      i <- which(cf == j)
      i <- i[which.max(abs(e[i]))]
      d[i] / e[i]
    }, numeric(1))
  }, numeric(nc)))
  recon <- vapply(seq_len(R), function(b) max(abs(pred + W[b, cf] * e - ystar[[b]])), 0)
  stopifnot(max(recon) < 1e-12)

  list(
    case = name, data = data_file, yi = "yi", vi = "vi",
    random = gsub("^~ *1 *\\| *", "", random), mods = mods, rho = rho,
    coef_names = cn, constraints = coefs, R = R, seed = seed, auxiliary_dist = dist,
    adjust = adjust, type = type, test = test,
    cluster = names(full$s.names)[1],
    cluster_levels = levels(cluster),
    weights = lapply(seq_len(R), function(b) num(W[b, ])),
    null_fitted = num(pred), null_resid = num(e),
    expect = list(original = as.numeric(attr(res, "original")),
                  boot = num(attr(res, "bootstraps")),
                  p_val = res$p_val),
    notes = c(
      sprintf("wildmeta %s, clubSandwich %s, metafor %s, R %s",
              packageVersion("wildmeta"), packageVersion("clubSandwich"),
              packageVersion("metafor"), getRversion()),
      sprintf("Wald_test_cwb(full, constrain_zero(c(%s)), R = %d, auxiliary_dist = '%s', adjust = '%s', type = '%s', test = '%s', seed = %d)",
              paste(match(coefs, cn), collapse = ", "), R, dist, adjust, type, test, seed),
      if (is.null(rho)) "full model: rma.mv(yi, vi, random, mods, method = 'REML')"
      else sprintf("full model: rma.mv(yi, V = vcalc(vi, cluster, obs = row, rho = %s), random, mods, method = 'REML')", rho),
      note)
  )
}

cases <- list(
  make_case("assink_deltype_cwb_adj", "assink2016.csv", "~ 1 | study/esid", "~ deltype", NULL,
            c("deltypegeneral", "deltypeovert"), 99, 20240101, "Rademacher", "CR2",
            note = "two coefficients jointly, CWB-adjusted"),
  make_case("assink_deltype_cwb", "assink2016.csv", "~ 1 | study/esid", "~ deltype", NULL,
            c("deltypegeneral", "deltypeovert"), 99, 20240102, "Rademacher", "CR0",
            note = "two coefficients jointly, plain CWB"),
  make_case("assink_year_che_adj", "assink2016.csv", "~ 1 | study/esid", "~ year", 0.6,
            c("year"), 99, 20240103, "Rademacher", "CR2",
            note = "one coefficient, CHE working model (rho = 0.6)"),
  make_case("assink_deltype_che_mammen", "assink2016.csv", "~ 1 | study/esid", "~ deltype", 0.6,
            c("deltypeovert"), 99, 20240104, "Mammen", "CR2",
            note = "one of two coefficients, CHE, Mammen weights"),
  make_case("alliance_phase_webb_htz", "alliance_like.csv", "~ 1 | study/es", "~ phase", NULL,
            c("phaselate"), 99, 20240105, "Webb six", "CR2", type = "CR2", test = "HTZ",
            note = "alliance_like.csv is SIMULATED data; CR2 HTZ statistic, Webb weights"),
  make_case("konst_year_cwb_cr1", "konstantopoulos2011.csv", "~ 1 | district/school", "~ year",
            NULL, c("year"), 99, 20240106, "Rademacher", "CR0", type = "CR1",
            note = "CR1 naive-F statistic, plain CWB")
)

writeLines(toJSON(list(source = "scripts/make_cwb_fixtures.R", cases = cases),
                  auto_unbox = TRUE, digits = I(17), null = "null", pretty = TRUE),
           file.path(out_dir, "cases.json"))
cat("wrote", length(cases), "cases to", file.path(out_dir, "cases.json"), "\n")
