# Reference values for mlmeta.effects from R's metafor 3.8-1.
#
# Writes tests/fixtures/escalc/*.json. Run from the repository root:
#
#     Rscript scripts/make_escalc_reference.R
#
# The output is deterministic (set.seed) and every double is printed with 17 significant digits, so
# it reads back to the identical double. The test suite only reads the JSON files; it never runs R.
#
# Layout of each file: {"generator", "R", "metafor", "cases": [...]}. An escalc case holds
# `measure`, `args` (metafor argument name -> vector), `options` (add / to / vtype), and metafor's
# `yi` and `vi` (null where metafor returns NA). Conversion cases hold `input` vectors and `expected`.

suppressMessages(library(metafor))
if (packageVersion("metafor") != "3.8.1") {
  stop("expected metafor 3.8-1, found ", as.character(packageVersion("metafor")))
}

out_dir <- file.path("tests", "fixtures", "escalc")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)

# ---------------------------------------------------------------------------------------------
# A small JSON writer: numbers with 17 significant digits (jsonlite stops at 15), NA -> null.
# Vectors wrapped in I() are always arrays; other length-1 vectors are scalars.
# ---------------------------------------------------------------------------------------------
json_str <- function(s) {
  s <- gsub("\\\\", "\\\\\\\\", s)
  s <- gsub("\"", "\\\\\"", s)
  paste0("\"", s, "\"")
}
json_atom <- function(x) {
  if (is.na(x)) return("null")
  if (is.logical(x)) return(if (x) "true" else "false")
  if (is.numeric(x)) {
    if (!is.finite(x)) stop("non-finite number cannot be written to JSON: ", x)
    if (x == round(x) && abs(x) < 1e15) return(sprintf("%.0f", x))
    return(sprintf("%.17g", x))
  }
  json_str(as.character(x))
}
to_json <- function(x, indent = 0) {
  pad <- strrep("  ", indent + 1)
  end <- strrep("  ", indent)
  if (is.list(x)) {
    if (length(x) == 0) return(if (is.null(names(x))) "[]" else "{}")
    items <- vapply(x, to_json, "", indent = indent + 1)
    if (!is.null(names(x))) {
      items <- paste0(json_str(names(x)), ": ", items)
      return(paste0("{\n", paste0(pad, items, collapse = ",\n"), "\n", end, "}"))
    }
    return(paste0("[\n", paste0(pad, items, collapse = ",\n"), "\n", end, "]"))
  }
  as_array <- inherits(x, "AsIs") || length(x) != 1L
  x <- unclass(x)
  atoms <- vapply(seq_along(x), function(i) json_atom(x[[i]]), "")
  if (as_array) return(paste0("[", paste(atoms, collapse = ", "), "]"))
  atoms
}
write_fixture <- function(name, cases) {
  obj <- list(
    generator = "scripts/make_escalc_reference.R",
    R = R.version.string,
    metafor = as.character(packageVersion("metafor")),
    cases = cases
  )
  path <- file.path(out_dir, paste0(name, ".json"))
  writeLines(to_json(obj), path)
  cat("wrote", path, "(", length(cases), "cases )\n")
}

# One escalc case: runs metafor::escalc and records inputs, options and output. Warnings that
# metafor gives (e.g. "yi/vi equal to +-Inf recoded to NA") are recorded in `metafor_warnings`.
escalc_case <- function(name, measure, args, options = NULL, note = NULL) {
  if (is.null(options)) options <- structure(list(), names = character(0))  # JSON {}
  warn <- character(0)
  res <- withCallingHandlers(
    do.call(escalc, c(list(measure = measure), args, options)),
    warning = function(w) {
      warn <<- c(warn, conditionMessage(w))
      invokeRestart("muffleWarning")
    }
  )
  case <- list(
    name = name,
    measure = measure,
    args = lapply(args, function(v) I(as.numeric(v))),
    options = options,
    yi = I(as.numeric(res$yi)),
    vi = I(as.numeric(res$vi)),
    metafor_warnings = I(warn)
  )
  if (!is.null(note)) case$note <- note
  case
}

# ---------------------------------------------------------------------------------------------
# ZCOR and COR
# ---------------------------------------------------------------------------------------------
set.seed(20240501)
k <- 40
r_rand <- round(runif(k, -0.95, 0.95), 3)
n_rand <- sample(4:800, k, replace = TRUE)

r_edge <- c(0, -0.999999, 0.999999, 0.5, -0.5, 1e-12, -0.02, 0.3)
n_edge <- c(4, 5, 10, 4, 1e6, 100, 7, 4.5)

write_fixture("zcor", list(
  escalc_case("random", "ZCOR", list(ri = r_rand, ni = n_rand)),
  escalc_case("edge", "ZCOR", list(ri = r_edge, ni = n_edge),
              note = "n = 4 (smallest allowed), |r| close to 1, tiny r, non-integer n")
))

r_cor_edge <- c(0, -0.99, 0.99, -0.5, 1e-12, 0.25)
n_cor_edge <- c(4, 5, 1000, 4, 50, 3.5)
write_fixture("cor", list(
  escalc_case("random", "COR", list(ri = r_rand, ni = n_rand)),
  escalc_case("edge", "COR", list(ri = r_cor_edge, ni = n_cor_edge),
              note = "n = 4 (smallest integer n with a variance), negative r, |r| close to 1"),
  escalc_case("small_n", "COR", list(ri = c(0.3, -0.2, 0.5, 0.1), ni = c(2, 3, 2.5, 4)),
              note = "metafor 3.8-1 sets vi to NA for n <= 3 also for COR (mlmeta: InputError)"),
  escalc_case("random_vtype_AV", "COR", list(ri = r_rand, ni = n_rand), list(vtype = "AV")),
  escalc_case("boundary_r", "COR", list(ri = c(1, -1, 0.4), ni = c(20, 30, 40)),
              note = "|r| = 1 gives vi = 0 (mlmeta: allowed with a DataWarning)")
))

# ---------------------------------------------------------------------------------------------
# SMD
# ---------------------------------------------------------------------------------------------
set.seed(20240502)
k <- 30
smd_rand <- list(
  m1i = round(rnorm(k, 10, 3), 2), sd1i = round(runif(k, 0.5, 4), 2), n1i = sample(2:200, k, TRUE),
  m2i = round(rnorm(k, 9, 3), 2), sd2i = round(runif(k, 0.5, 4), 2), n2i = sample(2:200, k, TRUE)
)
smd_edge <- list(
  m1i  = c(1.0, 2.5, 0.3, 5.0, 10.0, 3.0, 4.0, -1.2, 7.0),
  sd1i = c(1.0, 1.5, 0.8, 2.0, 3.0,  0.0, 1.0, 0.9,  2.0),
  n1i  = c(2,   1,   3,   2,   1e5,  10,  12,  4,    3),
  m2i  = c(0.0, 1.0, 0.9, 5.0, 9.5,  2.0, 4.5, 0.4,  1.0),
  sd2i = c(1.0, 2.0, 1.1, 2.0, 3.2,  1.0, 0.0, 1.3,  4.0),
  n2i  = c(2,   3,   1,   2,   1e5,  12,  10,  2,    1)
)
normand <- dat.normand1999
normand_args <- list(m1i = normand$m1i, sd1i = normand$sd1i, n1i = normand$n1i,
                     m2i = normand$m2i, sd2i = normand$sd2i, n2i = normand$n2i)
write_fixture("smd", list(
  escalc_case("random", "SMD", smd_rand),
  escalc_case("edge", "SMD", smd_edge,
              note = paste("small n (n1 + n2 = 4, one group of size 1), huge n, equal means,",
                           "one SD zero, negative effects")),
  escalc_case("random_vtype_UB", "SMD", smd_rand, list(vtype = "UB")),
  escalc_case("random_vtype_LS2", "SMD", smd_rand, list(vtype = "LS2")),
  escalc_case("random_vtype_AV", "SMD", smd_rand, list(vtype = "AV")),
  escalc_case("edge_vtype_UB", "SMD", smd_edge, list(vtype = "UB")),
  escalc_case("dat.normand1999", "SMD", normand_args)
))

# ---------------------------------------------------------------------------------------------
# OR
# ---------------------------------------------------------------------------------------------
set.seed(20240503)
k <- 30
n1 <- sample(10:500, k, TRUE)
n2 <- sample(10:500, k, TRUE)
a <- rbinom(k, n1, runif(k, 0.05, 0.6))
c_ <- rbinom(k, n2, runif(k, 0.05, 0.6))
or_rand <- list(ai = a, bi = n1 - a, ci = c_, di = n2 - c_)

# zero cells: ai = 0; ci = 0; bi = 0; di = 0; double zero (ai = ci = 0); bi = di = 0; none
or_zero <- list(
  ai = c(0,  12, 20, 7,  0,  15, 9,  3),
  bi = c(25, 8,  0,  13, 40, 0,  11, 1),
  ci = c(6,  0,  14, 9,  0,  30, 10, 1),
  di = c(19, 30, 6,  0,  35, 0,  14, 2)
)
or_zero_n <- list(ai = or_zero$ai, n1i = or_zero$ai + or_zero$bi,
                  ci = or_zero$ci, n2i = or_zero$ci + or_zero$di)
or_nozero <- lapply(or_zero, function(v) v[c(7, 8)])
or_nozero <- list(ai = c(or_nozero$ai, 5, 40), bi = c(or_nozero$bi, 95, 60),
                  ci = c(or_nozero$ci, 10, 33), di = c(or_nozero$di, 90, 67))
bcg <- dat.bcg
bcg_args <- list(ai = bcg$tpos, bi = bcg$tneg, ci = bcg$cpos, di = bcg$cneg)

write_fixture("or", list(
  escalc_case("random", "OR", or_rand),
  escalc_case("random_n", "OR", list(ai = a, n1i = n1, ci = c_, n2i = n2),
              note = "ai/n1i/ci/n2i form of the random case"),
  escalc_case("zero_cells", "OR", or_zero,
              note = "zero in each cell in turn, double zero (ai = ci = 0), bi = di = 0, no zero"),
  escalc_case("zero_cells_n", "OR", or_zero_n, note = "ai/n1i/ci/n2i form of zero_cells"),
  escalc_case("zero_cells_to_all", "OR", or_zero, list(to = "all")),
  escalc_case("zero_cells_to_if0all", "OR", or_zero, list(to = "if0all")),
  escalc_case("zero_cells_add1", "OR", or_zero, list(add = 1)),
  escalc_case("zero_cells_to_none", "OR", or_zero, list(to = "none"),
              note = "metafor recodes infinite yi/vi to NA (null) with a warning"),
  escalc_case("nozero_to_if0all", "OR", or_nozero, list(to = "if0all")),
  escalc_case("nozero_add0", "OR", or_nozero, list(add = 0)),
  escalc_case("dat.bcg", "OR", bcg_args)
))

# ---------------------------------------------------------------------------------------------
# Partial and semi-partial correlations: PCOR, ZPCOR, SPCOR
# ---------------------------------------------------------------------------------------------
set.seed(20240511)
k <- 30
p_ni <- sample(15:600, k, TRUE)
p_mi <- sample(1:8, k, TRUE)
p_ti <- round(rnorm(k, 1, 2.5), 3)
p_edge <- list(ti = c(0, -12.5, 40, 2.1, -0.7), ni = c(10, 200, 5000, 6, 8),
               mi = c(3, 0, 10, 4, 6))
# R^2 large enough that the SPCOR variance stays positive
p_r2 <- round(runif(k, 0.3, 0.7), 3)
write_fixture("partial", list(
  escalc_case("random", "PCOR", list(ti = p_ti, ni = p_ni, mi = p_mi)),
  escalc_case("edge", "PCOR", p_edge, note = "t = 0, mi = 0, ni - mi - 1 = 1"),
  escalc_case("random_vtype_AV", "PCOR", list(ti = p_ti, ni = p_ni, mi = p_mi),
              list(vtype = "AV")),
  escalc_case("random", "ZPCOR", list(ti = p_ti, ni = p_ni, mi = p_mi)),
  escalc_case("edge", "ZPCOR", p_edge),
  escalc_case("random", "SPCOR", list(ti = p_ti, ni = p_ni, mi = p_mi, r2i = p_r2)),
  escalc_case("random_vtype_AV", "SPCOR", list(ti = p_ti, ni = p_ni, mi = p_mi, r2i = p_r2),
              list(vtype = "AV")),
  escalc_case("negative_variance", "SPCOR", list(ti = c(2, 4.21), ni = c(30, 25),
                                                 mi = c(2, 4), r2i = c(0.3, 0.1)),
              note = "row 2: the LS variance is negative; metafor sets vi (not yi) to NA")
))

# ---------------------------------------------------------------------------------------------
# Two groups, continuous: MD, SMD from d or t, SMDH, ROM
# ---------------------------------------------------------------------------------------------
set.seed(20240512)
k <- 30
g_rand <- list(
  m1i = round(rnorm(k, 20, 4), 2), sd1i = round(runif(k, 1, 6), 2), n1i = sample(2:200, k, TRUE),
  m2i = round(rnorm(k, 18, 4), 2), sd2i = round(runif(k, 1, 6), 2), n2i = sample(2:200, k, TRUE)
)
g_edge <- list(
  m1i  = c(5.0, 2.5, 10.0, 0.3, 7.0),
  sd1i = c(1.0, 0.0, 3.0,  0.2, 2.0),
  n1i  = c(2,   3,   1e5,  10,  3),
  m2i  = c(5.0, 1.0, 9.5,  0.9, 1.0),
  sd2i = c(1.0, 2.0, 3.2,  0.3, 4.0),
  n2i  = c(2,   3,   1e5,  12,  2)
)
# SMD from d (uncorrected) and from t: rows with d or t have no means/SDs (NA)
d_in <- c(0.5, NA, -0.3, NA, 1.2, NA, 0)
t_in <- c(NA, 2.4, NA, -1.1, 3.0, NA, NA)
n1_in <- c(20, 15, 40, 8, 30, 25, 6)
n2_in <- c(22, 15, 35, 9, 28, 20, 5)
means_rows <- is.na(d_in) & is.na(t_in)
smd_mixed <- list(
  m1i = ifelse(means_rows, 10.3, NA), sd1i = ifelse(means_rows, 2.1, NA), n1i = n1_in,
  m2i = ifelse(means_rows, 9.1, NA), sd2i = ifelse(means_rows, 2.6, NA), n2i = n1_in * 0 + n2_in,
  di = d_in, ti = t_in
)
write_fixture("continuous", list(
  escalc_case("random", "MD", g_rand),
  escalc_case("random_vtype_HO", "MD", g_rand, list(vtype = "HO")),
  escalc_case("random_vtype_UB", "MD", g_rand, list(vtype = "UB")),
  escalc_case("edge", "MD", g_edge, note = "equal means, SD 0, huge n"),
  escalc_case("d_t_means", "SMD", smd_mixed,
              note = "rows from di (uncorrected d), from ti (d = t sqrt(1/n1 + 1/n2)), from means"),
  escalc_case("d_t_means_vtype_UB", "SMD", smd_mixed, list(vtype = "UB")),
  escalc_case("random", "SMDH", g_rand),
  escalc_case("random_vtype_LS2", "SMDH", g_rand, list(vtype = "LS2")),
  escalc_case("edge", "SMDH", g_edge),
  escalc_case("random", "ROM", g_rand),
  escalc_case("random_vtype_HO", "ROM", g_rand, list(vtype = "HO")),
  escalc_case("random_vtype_AV", "ROM", g_rand, list(vtype = "AV")),
  escalc_case("random_vtype_AVHO", "ROM", g_rand, list(vtype = "AVHO")),
  escalc_case("edge", "ROM", g_edge)
))

# ---------------------------------------------------------------------------------------------
# Pre-post: MC, SMCC, SMCR, SMCRH
# ---------------------------------------------------------------------------------------------
set.seed(20240513)
k <- 30
pp_rand <- list(
  m1i = round(rnorm(k, 50, 8), 2), sd1i = round(runif(k, 2, 10), 2),
  m2i = round(rnorm(k, 47, 8), 2), sd2i = round(runif(k, 2, 10), 2),
  ni = sample(3:250, k, TRUE), ri = round(runif(k, -0.3, 0.95), 3)
)
pp_edge <- list(m1i = c(10, 5, 7.5, 3, 12), sd1i = c(2, 1, 0.5, 4, 3),
                m2i = c(10, 6, 7, 1, 9), sd2i = c(3, 1.5, 0.5, 4, 2),
                ni = c(3, 4, 1000, 25, 5), ri = c(1, -1, 0, 0.999, 0.5))
write_fixture("prepost", list(
  escalc_case("random", "MC", pp_rand),
  escalc_case("edge", "MC", pp_edge, note = "r = 1 and r = -1, n = 3"),
  escalc_case("random", "SMCC", pp_rand),
  escalc_case("random_vtype_LS2", "SMCC", pp_rand, list(vtype = "LS2")),
  escalc_case("edge", "SMCC", pp_edge, note = "r = 1 with unequal SDs (change-score SD > 0)"),
  escalc_case("random", "SMCR", pp_rand[c("m1i", "sd1i", "m2i", "ni", "ri")]),
  escalc_case("random_vtype_LS2", "SMCR", pp_rand[c("m1i", "sd1i", "m2i", "ni", "ri")],
              list(vtype = "LS2")),
  escalc_case("edge", "SMCR", pp_edge[c("m1i", "sd1i", "m2i", "ni", "ri")]),
  escalc_case("random", "SMCRH", pp_rand),
  escalc_case("edge", "SMCRH", pp_edge)
))

# ---------------------------------------------------------------------------------------------
# 2x2 tables: RR, RD, PETO (OR above) with zero cells, continuity corrections and drop00
# ---------------------------------------------------------------------------------------------
binary_cases <- list()
for (m in c("OR", "RR", "RD", "PETO")) {
  cases_m <- list(
    escalc_case("zero_cells_drop00", m, or_zero, list(drop00 = TRUE),
                note = "rows 5 (ai = ci = 0) and 6 (bi = di = 0) set to NA by drop00"),
    escalc_case("zero_cells_drop00_if0all", m, or_zero, list(drop00 = TRUE, to = "if0all"))
  )
  if (m != "OR") {
    cases_m <- c(list(
      escalc_case("random", m, or_rand),
      escalc_case("random_n", m, list(ai = a, n1i = n1, ci = c_, n2i = n2)),
      escalc_case("zero_cells", m, or_zero),
      escalc_case("zero_cells_n", m, or_zero_n),
      escalc_case("zero_cells_to_all", m, or_zero, list(to = "all")),
      escalc_case("zero_cells_to_if0all", m, or_zero, list(to = "if0all")),
      escalc_case("zero_cells_add1", m, or_zero, list(add = 1)),
      escalc_case("nozero_to_if0all", m, or_nozero, list(to = "if0all")),
      escalc_case("dat.bcg", m, bcg_args)
    ), cases_m)
  }
  binary_cases <- c(binary_cases, cases_m)
}
binary_cases <- c(binary_cases, list(
  escalc_case("zero_cells_to_none", "RR", or_zero, list(to = "none"),
              note = "log(0): metafor recodes infinite yi/vi to NA (null) with a warning"),
  escalc_case("zero_cells_add0", "RD", or_zero, list(add = 0),
              note = "the uncorrected risk difference"),
  escalc_case("zero_cells_to_none", "PETO", or_zero, list(to = "none"),
              note = "a double-zero or double-full table has V = 0: NA"),
  escalc_case("random_vtype_UB", "RD", or_rand, list(vtype = "UB")),
  escalc_case("random_vtype_AV", "RD", or_rand, list(vtype = "AV")),
  escalc_case("zero_cells_vtype_AV", "RD", or_zero, list(vtype = "AV")),
  escalc_case("zero_cells_vtype_AV_drop00", "RD", or_zero, list(vtype = "AV", drop00 = TRUE))
))
write_fixture("binary", binary_cases)

# ---------------------------------------------------------------------------------------------
# Single proportions: PR, PLN, PLO, PAS
# ---------------------------------------------------------------------------------------------
set.seed(20240514)
k <- 30
pr_n <- sample(5:400, k, TRUE)
pr_x <- rbinom(k, pr_n, runif(k, 0.02, 0.9))
pr_zero <- list(xi = c(0, 12, 30, 5, 0, 1), mi = c(20, 0, 10, 45, 8, 1),
                note = NULL)
pr_zero$note <- NULL
pr_zero_n <- list(xi = pr_zero$xi, ni = pr_zero$xi + pr_zero$mi)
prop_cases <- list()
for (m in c("PR", "PLN", "PLO", "PAS")) {
  cases_m <- list(
    escalc_case("random", m, list(xi = pr_x, mi = pr_n - pr_x)),
    escalc_case("random_n", m, list(xi = pr_x, ni = pr_n)),
    escalc_case("zero", m, pr_zero, note = "no events, only events"),
    escalc_case("zero_n", m, pr_zero_n),
    escalc_case("zero_to_all", m, pr_zero, list(to = "all")),
    escalc_case("zero_to_if0all", m, pr_zero, list(to = "if0all")),
    escalc_case("zero_add_quarter", m, pr_zero, list(add = 0.25))
  )
  if (m != "PR" && m != "PAS") cases_m <- c(cases_m, list(
    escalc_case("random_vtype_AV", m, list(xi = pr_x, mi = pr_n - pr_x), list(vtype = "AV"))))
  prop_cases <- c(prop_cases, cases_m)
}
prop_cases <- c(prop_cases, list(
  escalc_case("random_vtype_UB", "PR", list(xi = pr_x, mi = pr_n - pr_x), list(vtype = "UB")),
  escalc_case("random_vtype_AV", "PR", list(xi = pr_x, mi = pr_n - pr_x), list(vtype = "AV")),
  escalc_case("zero_add0", "PR", pr_zero, list(add = 0)),
  escalc_case("zero_to_none", "PLO", pr_zero, list(to = "none"),
              note = "log(0): metafor recodes infinite yi/vi to NA (null) with a warning"),
  escalc_case("zero_add_half", "PAS", pr_zero, list(add = 0.5),
              note = "PAS adds nothing by default; an explicit add is used")
))
write_fixture("proportion", prop_cases)

# ---------------------------------------------------------------------------------------------
# Conversions (closed forms evaluated in R; metafor's transf.ztor / transf.rtoz where they exist)
# ---------------------------------------------------------------------------------------------
conv_case <- function(name, fun, input, expected, note = NULL) {
  case <- list(name = name, fun = fun,
               input = lapply(input, function(v) I(as.numeric(v))),
               expected = I(as.numeric(expected)))
  if (!is.null(note)) case$note <- note
  case
}

set.seed(20240504)
z <- c(seq(-3, 3, by = 0.25), 1e-10, -1e-10, 10, -15, 20)
r <- c(seq(-0.99, 0.99, length.out = 23), 1e-10, 0.999999, -0.999999)

t_stat <- round(rnorm(20, 0, 3), 3); t_df <- sample(1:300, 20, TRUE)
t_stat <- c(t_stat, 0, -25); t_df <- c(t_df, 10, 2.5)

f_stat <- round(rchisq(20, 1) * 4, 3); f_df2 <- sample(1:300, 20, TRUE)
f_sign <- sample(c(-1, 1), 20, TRUE)
f_stat <- c(f_stat, 0); f_df2 <- c(f_df2, 12); f_sign <- c(f_sign, 1)

d <- c(round(rnorm(20, 0, 1.2), 3), 0, -4)
dn1 <- c(sample(2:300, 20, TRUE), 10, 5); dn2 <- c(sample(2:300, 20, TRUE), 10, 50)
rr <- c(round(runif(20, -0.95, 0.95), 3), 0, -0.999)
rn1 <- c(sample(2:300, 20, TRUE), 7, 40); rn2 <- c(sample(2:300, 20, TRUE), 9, 4)

# Independent checks on simulated raw data (not just the formula re-evaluated):
#  * cor.test() of x and y gives t and df; t / sqrt(t^2 + df) must return cor(x, y);
#  * anova(lm(y ~ x)) gives F(1, df2); sign(r) * sqrt(F / (F + df2)) must return cor(x, y);
#  * two groups: the point-biserial correlation cor(g, y) equals d / sqrt(d^2 + N^2 / (n1 n2))
#    when d uses the pooled SD with divisor N (Borenstein et al. 2009's a = N^2 / (n1 n2)).
raw_r <- raw_t <- raw_df <- raw_F <- raw_df2 <- numeric(0)
pb_r <- pb_d <- pb_n1 <- pb_n2 <- numeric(0)
for (i in 1:12) {
  n <- sample(5:200, 1)
  x <- rnorm(n); y <- 0.4 * x * (i %% 3 - 1) + rnorm(n)
  ct <- cor.test(x, y)
  av <- anova(lm(y ~ x))
  raw_r <- c(raw_r, cor(x, y)); raw_t <- c(raw_t, unname(ct$statistic))
  raw_df <- c(raw_df, unname(ct$parameter))
  raw_F <- c(raw_F, av[["F value"]][1]); raw_df2 <- c(raw_df2, av[["Df"]][2])
  n1_ <- sample(3:100, 1); n2_ <- sample(3:100, 1)
  g <- rep(c(1, 0), c(n1_, n2_)); yy <- rnorm(n1_ + n2_) + 0.5 * g * (i %% 2)
  ssw <- sum((yy[g == 1] - mean(yy[g == 1]))^2) + sum((yy[g == 0] - mean(yy[g == 0]))^2)
  pb_r <- c(pb_r, cor(g, yy)); pb_n1 <- c(pb_n1, n1_); pb_n2 <- c(pb_n2, n2_)
  pb_d <- c(pb_d, (mean(yy[g == 1]) - mean(yy[g == 0])) / sqrt(ssw / (n1_ + n2_)))
}

a_n <- (dn1 + dn2)^2 / (dn1 * dn2)
a_rn <- (rn1 + rn2)^2 / (rn1 * rn2)
write_fixture("conversions", list(
  conv_case("ztor", "ztor", list(z = z), transf.ztor(z)),
  conv_case("rtoz", "rtoz", list(r = r), transf.rtoz(r)),
  conv_case("r_from_t", "r_from_t", list(t = t_stat, df = t_df), t_stat / sqrt(t_stat^2 + t_df)),
  conv_case("r_from_f", "r_from_f", list(F = f_stat, df2 = f_df2, sign = f_sign),
            f_sign * sqrt(f_stat / (f_stat + f_df2))),
  conv_case("r_from_d_n", "r_from_d", list(d = d, n1 = dn1, n2 = dn2), d / sqrt(d^2 + a_n)),
  conv_case("r_from_d_equal", "r_from_d", list(d = d), d / sqrt(d^2 + 4)),
  conv_case("d_from_r_n", "d_from_r", list(r = rr, n1 = rn1, n2 = rn2),
            sqrt(a_rn) * rr / sqrt(1 - rr^2)),
  conv_case("d_from_r_equal", "d_from_r", list(r = rr), 2 * rr / sqrt(1 - rr^2)),
  conv_case("raw_r_from_t", "r_from_t", list(t = raw_t, df = raw_df), raw_r,
            note = "t and df from cor.test() on simulated data; expected = cor(x, y)"),
  conv_case("raw_r_from_f", "r_from_f", list(F = raw_F, df2 = raw_df2, sign = sign(raw_r)), raw_r,
            note = "F(1, df2) from anova(lm(y ~ x)); expected = cor(x, y)"),
  conv_case("raw_r_from_d", "r_from_d", list(d = pb_d, n1 = pb_n1, n2 = pb_n2), pb_r,
            note = "d with the pooled SD of divisor N; expected = point-biserial cor(g, y)")
))

# ---------------------------------------------------------------------------------------------
# transf.ztor.int: mean of tanh(Z), Z ~ N(z, tau2), by integrate() over z +- 10 sd
# ---------------------------------------------------------------------------------------------
zi <- c(-2, -0.5, 0, 0.3, 1, 2.5)
tau2s <- c(0, 0.01, 0.05, 0.2, 1, 3)
grid <- expand.grid(z = zi, tau2 = tau2s)
grid$expected <- mapply(function(z, t2) transf.ztor.int(z, targs = list(tau2 = t2)), grid$z, grid$tau2)
write_fixture("ztor_int", list(
  list(name = "grid", fun = "ztor_int",
       input = list(z = I(grid$z), vi_total = I(grid$tau2)),
       expected = I(grid$expected),
       note = "metafor::transf.ztor.int(z, targs = list(tau2 = vi_total)), one call per pair")
))

# ---------------------------------------------------------------------------------------------
# Conversions of estimates and variances between d, r and log OR (Borenstein et al. 2009, ch. 7),
# closed forms evaluated in R; back-transformations with metafor's transf functions
# ---------------------------------------------------------------------------------------------
set.seed(20240515)
cd <- round(rnorm(15, 0.3, 0.8), 3); cvd <- round(runif(15, 0.005, 0.3), 4)
cn1 <- sample(5:300, 15, TRUE); cn2 <- sample(5:300, 15, TRUE)
cr <- round(runif(15, -0.9, 0.9), 3); cvr <- round(runif(15, 0.001, 0.05), 4)
clor <- round(rnorm(15, 0.4, 1.2), 3); cvlor <- round(runif(15, 0.01, 0.8), 4)
a_c <- (cn1 + cn2)^2 / (cn1 * cn2)
d_of_lor <- clor * sqrt(3) / pi; vd_of_lor <- cvlor * 3 / pi^2
conv2_case <- function(name, from, to, input, yi, vi) {
  list(name = name, fun = "convert", from = from, to = to,
       input = lapply(input, function(v) I(as.numeric(v))),
       expected_yi = I(as.numeric(yi)), expected_vi = I(as.numeric(vi)))
}
write_fixture("convert", list(
  conv2_case("d_to_logOR", "d", "logOR", list(yi = cd, vi = cvd), cd * pi / sqrt(3),
             cvd * pi^2 / 3),
  conv2_case("logOR_to_d", "logOR", "d", list(yi = clor, vi = cvlor), d_of_lor, vd_of_lor),
  conv2_case("d_to_r_n", "d", "r", list(yi = cd, vi = cvd, n1 = cn1, n2 = cn2),
             cd / sqrt(cd^2 + a_c), a_c^2 * cvd / (cd^2 + a_c)^3),
  conv2_case("d_to_r_equal", "d", "r", list(yi = cd, vi = cvd), cd / sqrt(cd^2 + 4),
             16 * cvd / (cd^2 + 4)^3),
  conv2_case("r_to_d_equal", "r", "d", list(yi = cr, vi = cvr), 2 * cr / sqrt(1 - cr^2),
             4 * cvr / (1 - cr^2)^3),
  conv2_case("r_to_d_n", "r", "d", list(yi = cr, vi = cvr, n1 = cn1, n2 = cn2),
             sqrt(a_c) * cr / sqrt(1 - cr^2), a_c * cvr / (1 - cr^2)^3),
  conv2_case("logOR_to_r", "logOR", "r", list(yi = clor, vi = cvlor),
             d_of_lor / sqrt(d_of_lor^2 + 4), 16 * vd_of_lor / (d_of_lor^2 + 4)^3),
  conv2_case("r_to_logOR", "r", "logOR", list(yi = cr, vi = cvr),
             2 * cr / sqrt(1 - cr^2) * pi / sqrt(3), 4 * cvr / (1 - cr^2)^3 * pi^2 / 3)
))

bt_x <- c(seq(-4, 4, by = 0.5), 1e-8, -30, 30)
bt_as <- c(seq(0, pi / 2, length.out = 9), 0.1234)
write_fixture("backtransforms", list(
  conv_case("exp", "exp", list(x = bt_x), exp(bt_x)),
  conv_case("ilogit", "ilogit", list(x = bt_x), transf.ilogit(bt_x)),
  conv_case("iarcsin", "iarcsin", list(x = bt_as), transf.iarcsin(bt_as)),
  conv_case("ztor", "ztor", list(x = bt_x), transf.ztor(bt_x))
))
