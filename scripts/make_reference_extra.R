# Additional reference values for mlmeta from R's metafor 3.8-1 and clubSandwich 0.5.8.
#
# Writes tests/fixtures/reference_extra/cases/*.json and tests/fixtures/reference_extra/data/*.csv.
# Run from the repository root:
#
#     Rscript scripts/make_reference_extra.R
#
# Same case schema as tests/fixtures/reference (see its README.md); the new blocks are documented
# in tests/fixtures/reference_extra/README.md. Three groups of cases:
#   1. CHE models: V from vcalc() with a constant within-study correlation, plus a rho sweep;
#   2. publication-bias tools on data aggregated to one effect per study (aggregate.escalc):
#      ranktest, trimfill, selmodel;
#   3. simulated hard cases for numerical reliability (the k = 100000 case cannot be fitted by
#      metafor here; its keys come from metafor's formulas for that model, checked against metafor
#      on a subset -- see the notes in the case).
#
# Every case records in `notes` the R calls used, metafor warnings, and checks of metafor's
# default convergence against the exact REML optimum.
#
# Deterministic (set.seed before every simulation). Doubles are written with the fewest of
# 15/16/17 significant digits that read back to the identical double (checked with a correctly
# rounded parser); the JSON layout is that of the existing case files (Python json.dump, indent 1).
# jsonlite::toJSON(digits = NA) is not used for numbers: jsonlite 1.8.4 prints only 15 significant
# digits with digits = NA, which does not round-trip.

t_start <- proc.time()[["elapsed"]]
tick <- function(label) cat(sprintf("[%6.1f s] %s\n", proc.time()[["elapsed"]] - t_start, label))

suppressMessages({
  library(metafor)
  library(clubSandwich)
  library(jsonlite)
})
if (packageVersion("metafor") != "3.8.1") {
  stop("expected metafor 3.8-1, found ", as.character(packageVersion("metafor")))
}
if (packageVersion("clubSandwich") != "0.5.8") {
  stop("expected clubSandwich 0.5.8, found ", as.character(packageVersion("clubSandwich")))
}

ref_data <- file.path("tests", "fixtures", "reference", "data")
out_root <- file.path("tests", "fixtures", "reference_extra")
out_cases <- file.path(out_root, "cases")
out_data <- file.path(out_root, "data")
dir.create(out_cases, recursive = TRUE, showWarnings = FALSE)
dir.create(out_data, recursive = TRUE, showWarnings = FALSE)

SOURCE <- "metafor 3.8-1, R 4.2.2"
TOL_REL <- 1e-5
TOL_ABS <- 1e-7

# ---------------------------------------------------------------------------------------------
# Number formatting, JSON and CSV writers
# ---------------------------------------------------------------------------------------------

# Correctly rounded string -> double (jsonlite's parser uses C strtod; R's as.numeric() is not
# always exact in the last bit).
parse_num <- function(s) {
  if (!length(s)) return(numeric(0))
  as.numeric(jsonlite::fromJSON(paste0("[", paste(s, collapse = ","), "]")))
}

# Fewest of 15/16/17 significant digits that read back to the identical double; integral values
# below 1e15 without a decimal point; NA -> NA_character_.
num_strs <- function(x) {
  x <- as.numeric(x)
  out <- rep(NA_character_, length(x))
  ok <- !is.na(x)
  if (any(!is.finite(x[ok]))) stop("non-finite number cannot be written: ", x[ok][!is.finite(x[ok])][1])
  int <- ok & x == round(x) & abs(x) < 1e15
  out[int] <- sprintf("%.0f", x[int])
  todo <- which(ok & !int)
  for (d in 15:17) {
    if (!length(todo)) break
    s <- sprintf(paste0("%.", d, "g"), x[todo])
    good <- if (d == 17) rep(TRUE, length(todo)) else parse_num(s) == x[todo]
    out[todo[good]] <- s[good]
    todo <- todo[!good]
  }
  out
}

json_str <- function(s) {
  s <- gsub("\\\\", "\\\\\\\\", s)
  s <- gsub("\"", "\\\\\"", s)
  s <- gsub("\n", "\\\\n", s)
  paste0("\"", s, "\"")
}
json_atom <- function(x) {
  if (is.null(x) || is.na(x)) return("null")
  if (is.logical(x)) return(if (x) "true" else "false")
  if (is.numeric(x)) return(num_strs(x))
  json_str(as.character(x))
}
# Layout of Python's json.dump(indent = 1): every container over several lines, one space per level.
# Named lists -> objects; unnamed lists, vectors wrapped in I() and vectors of length != 1 -> arrays;
# NULL -> null.
to_json <- function(x, indent = 0) {
  pad <- strrep(" ", indent + 1)
  end <- strrep(" ", indent)
  if (is.null(x)) return("null")
  if (is.list(x)) {
    if (length(x) == 0) return(if (is.null(names(x))) "[]" else "{}")
    items <- vapply(x, function(e) to_json(e, indent + 1), "")
    if (!is.null(names(x))) {
      items <- paste0(json_str(names(x)), ": ", items)
      return(paste0("{\n", paste0(pad, items, collapse = ",\n"), "\n", end, "}"))
    }
    return(paste0("[\n", paste0(pad, items, collapse = ",\n"), "\n", end, "]"))
  }
  if (is.matrix(x)) stop("convert matrices to lists of rows first")
  as_array <- inherits(x, "AsIs") || length(x) != 1L
  x <- unclass(x)
  if (!as_array) return(json_atom(x))
  if (length(x) == 0) return("[]")
  atoms <- if (is.numeric(x)) ifelse(is.na(x), "null", num_strs(x)) else
    vapply(seq_along(x), function(i) json_atom(x[[i]]), "")
  paste0("[\n", paste0(pad, atoms, collapse = ",\n"), "\n", end, "]")
}
EMPTY_OBJ <- structure(list(), names = character(0))

# CSV: header unquoted, character columns quoted, numbers as num_strs(), NA empty.
write_csv_exact <- function(df, name) {
  cols <- lapply(df, function(v) {
    if (is.numeric(v)) {
      s <- num_strs(v); s[is.na(s)] <- ""; s
    } else {
      s <- paste0("\"", gsub("\"", "\"\"", as.character(v)), "\""); s[is.na(v)] <- ""; s
    }
  })
  lines <- c(paste(names(df), collapse = ","), do.call(paste, c(cols, sep = ",")))
  path <- file.path(out_data, name)
  writeLines(lines, path)
  invisible(path)
}

# Reads a CSV; numeric columns are parsed with the correctly rounded parser.
read_exact <- function(path) {
  d <- read.csv(path, stringsAsFactors = FALSE, colClasses = "character", na.strings = "")
  for (j in names(d)) {
    v <- d[[j]]
    nz <- !is.na(v)
    if (all(grepl("^[-+]?[0-9]*\\.?[0-9]+([eE][-+]?[0-9]+)?$", v[nz]))) {
      out <- rep(NA_real_, length(v))
      out[nz] <- parse_num(v[nz])
      d[[j]] <- out
    }
  }
  d
}

# Strings with `digits` significant digits, and the doubles they read back to.
round_sig <- function(x, digits) {
  s <- sprintf(paste0("%.", digits, "g"), x)
  parse_num(s)
}

write_case <- function(case) {
  path <- file.path(out_cases, paste0(case$case, ".json"))
  cat(to_json(case), file = path)   # no trailing newline, like the existing case files
  tick(paste("wrote", path))
  invisible(path)
}

# Evaluates expr, collecting warnings (muffled) as strings.
with_warnings <- function(expr) {
  warn <- character(0)
  value <- withCallingHandlers(expr, warning = function(w) {
    warn <<- c(warn, conditionMessage(w))
    invokeRestart("muffleWarning")
  })
  list(value = value, warnings = unique(warn))
}

# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------
vec <- function(x) I(as.numeric(x))
rows <- function(m) lapply(seq_len(nrow(m)), function(i) vec(m[i, ]))

# Core keys, exactly as in tests/fixtures/reference (rma.mv or rma.uni fit).
core_keys <- function(fit) {
  fs <- fitstats(fit)
  is_mv <- inherits(fit, "rma.mv")
  has_re <- if (is_mv) isTRUE(fit$withS) else TRUE
  list(
    k = fit$k, p = fit$p,
    n_levels = if (has_re) vec(if (is_mv) fit$s.nlevels else fit$k) else list(),
    sigma2 = if (has_re) vec(if (is_mv) fit$sigma2 else fit$tau2) else list(),
    beta = vec(fit$beta), se = vec(fit$se), stat = vec(fit$zval),
    df = if (fit$test == "t") vec(fit$ddf) else NULL,
    pval = vec(fit$pval), ci_lb = vec(fit$ci.lb), ci_ub = vec(fit$ci.ub),
    vcov = rows(fit$vb),
    QE = fit$QE, QE_df = fit$k - fit$p, QEp = fit$QEp,
    QM = fit$QM, QM_df = vec(fit$QMdf), QMp = fit$QMp,
    logLik = fs[["logLik:", 1]], deviance = fs[["deviance:", 1]], AIC = fs[["AIC:", 1]],
    BIC = fs[["BIC:", 1]], AICc = fs[["AICc:", 1]]
  )
}

predict_block <- function(fit, transf = FALSE) {
  pr <- if (isFALSE(transf)) predict(fit) else predict(fit, transf = transf)
  list(pred = pr$pred, se = if (is.null(pr$se)) NA else pr$se, ci_lb = pr$ci.lb, ci_ub = pr$ci.ub,
       pi_lb = pr$pi.lb, pi_ub = pr$pi.ub)
}

# metafor-FAQ multilevel I2: W = solve(V) (= diag(1/vi) when V is diagonal),
# P = W - W X (X'WX)^-1 X'W, typical v = (k - p) / tr(P).
i2_block <- function(fit) {
  W <- solve(fit$V)
  X <- model.matrix(fit)
  P <- W - W %*% X %*% solve(t(X) %*% W %*% X) %*% t(X) %*% W
  tv <- (fit$k - fit$p) / sum(diag(P))
  s <- sum(fit$sigma2)
  list(total = 100 * s / (s + tv), levels = vec(100 * fit$sigma2 / (s + tv)), typical_v = tv)
}

robust_block <- function(fit, cluster) {
  rob <- robust(fit, cluster = cluster, clubSandwich = TRUE)
  list(se = vec(rob$se), stat = vec(rob$zval), df = vec(rob$ddf), pval = vec(rob$pval),
       ci_lb = vec(rob$ci.lb), ci_ub = vec(rob$ci.ub), vcov = rows(rob$vb),
       QM = rob$QM, QM_df = vec(rob$QMdf), QMp = rob$QMp, n_clusters = rob$n)
}

tolerance <- function(by_block = EMPTY_OBJ) list(rel = TOL_REL, abs = TOL_ABS, by_block = by_block)

# Largest relative difference (|a - b| / max(|b|, 1e-300)) over the numbers of two core-key lists.
max_rel_diff <- function(a, b, keys = c("sigma2", "beta", "se", "pval", "ci_lb", "ci_ub", "QE", "QM",
                                        "logLik", "AIC", "BIC", "AICc")) {
  out <- 0
  for (key in keys) {
    x <- unlist(a[[key]]); y <- unlist(b[[key]])
    d <- abs(x - y) / pmax(abs(y), 1e-300)
    d[x == y] <- 0
    out <- max(out, d)
  }
  out
}
# Largest |a - b| / max(abs, rel * |b|): <= 1 means a passes the tolerance against b.
tol_usage <- function(a, b, keys, rel, abs) {
  out <- 0
  for (key in keys) {
    x <- unlist(a[[key]]); y <- unlist(b[[key]])
    out <- max(out, abs(x - y) / pmax(abs, rel * abs(y)))
  }
  out
}
max_abs_diff <- function(a, b, keys = c("sigma2", "beta", "se", "ci_lb", "ci_ub", "logLik")) {
  max(vapply(keys, function(key) max(abs(unlist(a[[key]]) - unlist(b[[key]]))), 0))
}
fmt <- function(x) formatC(x, format = "g", digits = 3)

# Check of metafor's default convergence (nlminb, default tolerances): the exact REML optimum of
# the two-level model, by Fisher scoring on the analytic REML score (dense matrices; active set
# for components at the boundary 0), then metafor's own keys with sigma2 fixed at that optimum. The case keeps
# metafor's default-fit numbers; the note gives their distance from the exact optimum.
exact_reml <- function(y, V, X, A, s2) {
  m <- length(A)
  free <- rep(TRUE, m)        # active set: components fixed at the boundary 0 are not free
  for (it in 1:500) {
    M <- V + Reduce(`+`, Map(`*`, A, s2))
    Mi <- chol2inv(chol(M))
    P <- Mi - Mi %*% X %*% solve(t(X) %*% Mi %*% X, t(X) %*% Mi)
    Py <- P %*% y
    g <- vapply(A, function(Aj) -0.5 * sum(P * Aj) + 0.5 * c(crossprod(Py, Aj %*% Py)), 0)
    PA <- lapply(A, function(Aj) P %*% Aj)
    Fm <- matrix(0, m, m)
    for (i in seq_len(m)) for (j in seq_len(m)) Fm[i, j] <- 0.5 * sum(PA[[i]] * t(PA[[j]]))
    step <- rep(0, m)
    if (any(free)) step[free] <- solve(Fm[free, free, drop = FALSE], g[free])
    s2_new <- s2 + step
    neg <- free & s2_new < 0
    if (any(neg)) {           # a component hits 0: fix it there and re-solve for the others
      s2_new[neg] <- 0
      free[neg] <- FALSE
    }
    done <- !any(neg) && all(abs(s2_new - s2) <= 1e-14 * pmax(s2_new, 1e-8))
    s2 <- s2_new
    if (done) {
      release <- !free & g > 0   # a fixed component whose score points into the interior
      if (!any(release)) return(s2)
      free[release] <- TRUE
    }
  }
  stop("exact REML check did not converge")
}
exact_check_note <- function(fit, outer_ids, refit_fixed) {
  y <- c(fit$yi)
  A <- list(outer(outer_ids, outer_ids, "==") * 1, diag(length(y)))
  s2 <- exact_reml(y, fit$V, model.matrix(fit), A, fit$sigma2)
  fx <- refit_fixed(s2)
  keys <- c("beta", "se", "pval", "ci_lb", "ci_ub")
  a <- core_keys(fit); b <- core_keys(fx)
  rel_s2 <- if (any(s2 > 0)) max(abs(fit$sigma2 - s2)[s2 > 0] / s2[s2 > 0]) else 0
  abs_s2 <- max(abs(fit$sigma2 - s2))
  rel_k <- paste(vapply(keys, function(key) paste(key, fmt(max_rel_diff(a, b, key))), ""), collapse = ", ")
  ll_diff <- abs(a$logLik - b$logLik)
  usage <- max(tol_usage(list(sigma2 = fit$sigma2), list(sigma2 = s2), "sigma2", TOL_REL, TOL_ABS),
               tol_usage(a, b, keys, TOL_REL, TOL_ABS))
  sprintf(paste(
    "check: exact REML optimum (Fisher scoring on the analytic score) sigma2 = (%s); metafor's",
    "default fit differs by max abs %s / max rel %s (non-zero components) in sigma2; max rel diff of metafor's keys at",
    "the optimum (rma.mv with sigma2 fixed there): %s; abs diff %s in logLik; largest",
    "|diff|/max(abs, rel*|value|) under the case tolerance = %s%s"),
    paste(num_strs(s2), collapse = ", "), fmt(abs_s2), fmt(rel_s2), rel_k, fmt(ll_diff), fmt(usage),
    if (usage <= 1) "" else " -- NOTE: not within the case tolerance")
}
# =============================================================================================
# Group 1: CHE models ("correlated and hierarchical effects"), V from vcalc()
# =============================================================================================
for (f in c("alliance_like.csv", "assink2016.csv", "konstantopoulos2011.csv")) {
  file.copy(file.path(ref_data, f), file.path(out_data, f), overwrite = TRUE)
}

che_case <- function(name, data_file, escalc_spec, outer, inner, rho, mods = NULL, ztor = FALSE,
                     sweep = NULL) {
  d <- read_exact(file.path(out_data, data_file))
  notes <- character(0)
  if (!is.null(escalc_spec)) {
    e <- escalc(measure = escalc_spec$measure, ri = d[[escalc_spec$ri]], ni = d[[escalc_spec$ni]])
    stopifnot(identical(as.numeric(e$yi), d$yi), identical(as.numeric(e$vi), d$vi))
    notes <- c(notes, sprintf("yi/vi columns are identical to escalc(\"%s\", ri = %s, ni = %s)",
                              escalc_spec$measure, escalc_spec$ri, escalc_spec$ni))
  }
  stopifnot(!anyDuplicated(d[c(outer, inner)]))
  d$.outer <- d[[outer]]
  d$.inner <- d[[inner]]
  V <- vcalc(vi, cluster = .outer, obs = .inner, rho = rho, data = d)
  notes <- c(notes, sprintf(paste(
    "V <- vcalc(vi, cluster = %s, obs = %s, rho = %s, data = dat): V[i,j] = rho*sqrt(vi[i]*vi[j]) for",
    "i != j with the same %s, 0 for different %s values, vi on the diagonal (%s is unique within %s)"),
    outer, inner, rho, outer, outer, inner, outer))
  V_cs <- as.matrix(impute_covariance_matrix(d$vi, cluster = d[[outer]], r = rho, return_list = FALSE))
  dV <- max(abs(unname(V_cs) - unname(V)))
  notes <- c(notes, sprintf(paste(
    "check: clubSandwich::impute_covariance_matrix(vi, cluster = %s, r = %s, return_list = FALSE)",
    "gives the same V as vcalc: max |difference| = %s (%s)"),
    outer, rho, fmt(dV), if (dV == 0) "bit-identical" else "rounding in the last bit only"))
  stopifnot(dV < 1e-15)

  random <- as.formula(sprintf("~ 1 | %s/%s", outer, inner))
  mods_f <- if (is.null(mods)) NULL else as.formula(mods)
  fit_call <- function(Vmat, control = list()) {
    if (is.null(mods_f)) {
      rma.mv(yi, Vmat, random = random, data = d, method = "REML", test = "t", dfs = "contain",
             control = control)
    } else {
      rma.mv(yi, Vmat, random = random, mods = mods_f, data = d, method = "REML", test = "t",
             dfs = "contain", control = control)
    }
  }
  fw <- with_warnings(fit_call(V))
  fit <- fw$value
  notes <- c(notes, sprintf(paste0(
    "fit <- rma.mv(yi, V, random = ~ 1 | %s/%s%s, data = dat, method = \"REML\", test = \"t\", ",
    "dfs = \"contain\")"), outer, inner, if (is.null(mods)) "" else paste0(", mods = ", mods)))
  if (length(fw$warnings)) notes <- c(notes, paste("metafor warning (fit):", fw$warnings))
  expect <- core_keys(fit)
  notes <- c(notes, exact_check_note(fit, d[[outer]], function(s2) {
    if (is.null(mods_f)) {
      rma.mv(yi, V, random = random, data = d, method = "REML", test = "t", dfs = "contain", sigma2 = s2)
    } else {
      rma.mv(yi, V, random = random, mods = mods_f, data = d, method = "REML", test = "t",
             dfs = "contain", sigma2 = s2)
    }
  }))

  expect$I2 <- i2_block(fit)
  notes <- c(notes, paste(
    "I2: metafor-FAQ multilevel I2 with W = solve(V) (the FAQ code uses solve(res$V); with",
    "correlated errors it is no longer diag(1/vi)), P = W - W X (X'WX)^-1 X'W, typical_v = (k-p)/tr(P)"))
  if (is.null(mods)) {
    expect$predict <- predict_block(fit)
    if (ztor) expect$predict_r <- predict_block(fit, transf.ztor)
  } else {
    notes <- c(notes, "predict omitted: model has moderators (intercept-only block)")
    if (ztor) notes <- c(notes, "predict_r omitted: model has moderators (intercept-only block)")
  }
  rw <- with_warnings(robust_block(fit, d[[outer]]))
  expect$robust_cr2 <- rw$value
  notes <- c(notes, sprintf(
    "robust_cr2 <- robust(fit, cluster = %s, clubSandwich = TRUE) (CR2 with the CHE working model V)", outer))
  if (length(rw$warnings)) notes <- c(notes, paste("warning (robust):", rw$warnings))

  if (!is.null(sweep)) {
    sweep_usage <- 0
    sweep_ref_note <- ""
    expect$rho_sweep <- lapply(sweep, function(r) {
      Vr <- vcalc(vi, cluster = .outer, obs = .inner, rho = r, data = d)
      sw <- with_warnings(fit_call(Vr))
      if (length(sw$warnings)) notes <<- c(notes, sprintf("metafor warning (rho_sweep, rho = %s): %s", r, sw$warnings))
      ft <- sw$value
      entry <- list(rho = r, beta = vec(ft$beta), se = vec(ft$se), ci_lb = vec(ft$ci.lb),
                    ci_ub = vec(ft$ci.ub), sigma2 = vec(ft$sigma2))
      # distance from the exact REML optimum, as a fraction of the case tolerance
      s2 <- exact_reml(c(ft$yi), ft$V, model.matrix(ft), list(outer(d[[outer]], d[[outer]], "==") * 1,
                                                              diag(ft$k)), ft$sigma2)
      fx <- rma.mv(yi, Vr, random = random, data = d, method = "REML", test = "t", dfs = "contain", sigma2 = s2)
      ex <- list(beta = fx$beta, se = fx$se, ci_lb = fx$ci.lb, ci_ub = fx$ci.ub, sigma2 = s2)
      sweep_usage <<- max(sweep_usage, tol_usage(entry, ex, names(ex), TOL_REL, TOL_ABS))
      ref_file <- file.path("tests", "fixtures", "reference", "cases", sub("^che_", "", paste0(name, ".json")))
      if (r == 0 && file.exists(ref_file)) {
        ref <- jsonlite::fromJSON(ref_file)$expect
        dref <- max_rel_diff(entry, ref, c("beta", "se", "ci_lb", "ci_ub", "sigma2"))
        sweep_ref_note <<- sprintf(paste(
          " (max rel diff %s to %s: a V matrix instead of a vi vector changes metafor's optimiser",
          "path slightly)"), fmt(dref), basename(ref_file))
      }
      entry
    })
    notes <- c(notes, sprintf(paste(
      "rho_sweep: the same model (V from vcalc with rho = %s) refitted for each rho; rho = 0 is the",
      "ordinary diagonal-V multilevel model%s; check: largest |diff|/max(abs, rel*|value|) to the",
      "exact REML optimum over all rho = %s"),
      paste(sweep, collapse = ", "), sweep_ref_note, fmt(sweep_usage)))
  }
  if (!is.null(mods)) notes <- c(notes, "R2 omitted: not part of the CHE cases")

  write_case(list(
    case = name, source = SOURCE, data = data_file,
    escalc = if (is.null(escalc_spec)) NULL else escalc_spec,
    yi = "yi", vi = "vi",
    V = list(type = "constant_rho", cluster = outer, rho = rho),
    random = I(c(outer, inner)), mods = mods, method = "REML", test = "t", dfs = "contain",
    coef_names = I(rownames(fit$beta)),
    expect = expect, tolerance = tolerance(), notes = I(notes)
  ))
}

zcor <- list(measure = "ZCOR", ri = "ri", ni = "ni")
che_case("che_alliance_like_t", "alliance_like.csv", zcor, "study", "es", 0.5, ztor = TRUE,
         sweep = c(0, 0.2, 0.4, 0.6, 0.8, 0.9))
che_case("che_alliance_like_phase_t", "alliance_like.csv", zcor, "study", "es", 0.6, mods = "~ phase",
         ztor = TRUE)
che_case("che_assink2016_t", "assink2016.csv", NULL, "study", "esid", 0.5)
che_case("che_konstantopoulos2011_t", "konstantopoulos2011.csv", NULL, "district", "school", 0.5)

# =============================================================================================
# Group 2: publication bias on aggregated data (one effect per study)
# =============================================================================================
# metafor's rma.uni REML uses Fisher scoring that stops once tau2 changes by < threshold = 1e-5
# (absolute); on these data that leaves tau2 off by ~1e-6 (relative ~2e-4). The blocks that
# depend on a rma.uni REML fit therefore pass control = list(threshold = 1e-12, maxiter = 1000);
# the default-control results are compared in the notes.
TIGHT_UNI <- list(threshold = 1e-12, maxiter = 1000)

agg_case <- function(name, data_file, escalc_spec, ztor, cluster = "study", extra_note = NULL) {
  d <- read_exact(file.path(out_data, data_file))
  notes <- character(0)
  if (!is.null(escalc_spec)) {
    dat <- escalc(measure = "ZCOR", ri = ri, ni = ni, data = d)
    stopifnot(identical(as.numeric(dat$yi), d$yi), identical(as.numeric(dat$vi), d$vi))
    notes <- c(notes, "dat <- escalc(measure = \"ZCOR\", ri = ri, ni = ni, data = <csv>) (identical to the csv's yi/vi)")
  } else {
    dat <- escalc(yi = yi, vi = vi, data = d)
    notes <- c(notes, "dat <- escalc(yi = yi, vi = vi, data = <csv>) (measure \"GEN\": yi/vi taken as given)")
  }
  aw <- with_warnings(aggregate(dat, cluster = dat[[cluster]], rho = 0.5))
  agg <- aw$value
  agg <- agg[order(agg[[cluster]]), ]
  notes <- c(notes, sprintf(paste(
    "agg <- aggregate(dat, cluster = %s, rho = 0.5) (aggregate.escalc, struct = \"CS\", weighted = TRUE):",
    "per %s, V = vi on the diagonal and 0.5*sqrt(vi[i]*vi[j]) off it, W = solve(V),",
    "yi_agg = sum(W %%*%% yi)/sum(W), vi_agg = 1/sum(W); rows sorted by %s"), cluster, cluster, cluster))
  if (length(aw$warnings)) notes <- c(notes, paste("metafor warning (aggregate):", aw$warnings))
  agg_file <- sub("\\.csv$", "_agg.csv", data_file)
  agg_df <- data.frame(agg[[cluster]], as.numeric(agg$yi), as.numeric(agg$vi))
  names(agg_df) <- c(cluster, "yi", "vi")
  write_csv_exact(agg_df, agg_file)
  agg_back <- read_exact(file.path(out_data, agg_file))
  stopifnot(identical(agg_back$yi, as.numeric(agg$yi)), identical(agg_back$vi, as.numeric(agg$vi)))
  agg_df$.cluster <- agg_df[[cluster]]

  # Core keys: the same model as rma(yi, vi, method = "REML") written as rma.mv (default nlminb).
  mw <- with_warnings(rma.mv(yi, vi, random = ~ 1 | .cluster, data = agg_df, method = "REML", test = "z"))
  fit_mv <- mw$value
  if (length(mw$warnings)) notes <- c(notes, paste("metafor warning (rma.mv):", mw$warnings))
  expect <- core_keys(fit_mv)
  notes <- c(notes, sprintf(paste(
    "core keys: rma.mv(yi, vi, random = ~ 1 | %s, data = agg, method = \"REML\", test = \"z\")",
    "(the random-effects model of rma(yi, vi, data = agg, method = \"REML\"))"), cluster))
  expect$predict <- predict_block(fit_mv)
  if (ztor) expect$predict_r <- predict_block(fit_mv, transf.ztor)

  expect$aggregate <- list(cluster = vec(agg[[cluster]]), yi = vec(agg$yi), vi = vec(agg$vi))

  fd <- with_warnings(rma(yi, vi, data = agg, method = "REML"))
  fit_default <- fd$value
  ft <- with_warnings(rma(yi, vi, data = agg, method = "REML", control = TIGHT_UNI))
  fit <- ft$value
  for (w in c(fd$warnings, ft$warnings)) notes <- c(notes, paste("metafor warning (rma):", w))
  expect$rma_agg <- list(beta = c(fit$beta), se = fit$se, stat = fit$zval, pval = fit$pval,
                         ci_lb = fit$ci.lb, ci_ub = fit$ci.ub, tau2 = fit$tau2)
  notes <- c(notes, sprintf(paste(
    "rma_agg: fit <- rma(yi, vi, data = agg, method = \"REML\", control = list(threshold = 1e-12, maxiter = 1000));",
    "the default call rma(yi, vi, data = agg, method = \"REML\") stops Fisher scoring at threshold 1e-5 and",
    "gives tau2 = %s (rel diff %s), beta = %s (rel diff %s); rma_agg agrees with the rma.mv core keys:",
    "|tau2 - sigma2| = %s, |beta diff| = %s"),
    num_strs(fit_default$tau2), fmt(abs(fit_default$tau2 - fit$tau2) / fit$tau2),
    num_strs(c(fit_default$beta)), fmt(abs(c(fit_default$beta - fit$beta)) / abs(c(fit$beta))),
    fmt(abs(fit$tau2 - fit_mv$sigma2)), fmt(abs(c(fit$beta - fit_mv$beta)))))

  rt <- with_warnings(ranktest(fit))
  expect$ranktest <- list(tau = unname(rt$value$tau), pval = rt$value$pval)
  notes <- c(notes, paste(
    "ranktest <- ranktest(fit): cor.test(yi.star, vi, method = \"kendall\", exact = TRUE) with",
    "yi.star = (yi - b_FE)/sqrt(vi - 1/sum(1/vi)), b_FE the inverse-variance weighted mean; tau is",
    "Kendall's tau-b"))
  if (length(rt$warnings)) {
    notes <- c(notes, paste("warning (ranktest):", rt$warnings),
               paste("ranktest pval: because of ties cor.test falls back to the normal approximation",
                     "z = S / sqrt(tie-corrected var(S)), no continuity correction"))
  } else {
    notes <- c(notes, "ranktest pval: exact Kendall p-value (no ties, k < 50)")
  }

  tw <- with_warnings(trimfill(fit, control = TIGHT_UNI))
  tf <- tw$value
  tdw <- with_warnings(trimfill(fit_default))
  tf_default <- tdw$value
  for (w in unique(c(tw$warnings, tdw$warnings))) notes <- c(notes, paste("metafor warning (trimfill):", w))
  stopifnot(tf$k0 == tf_default$k0, tf$side == tf_default$side)
  expect$trimfill <- list(
    k0 = tf$k0, k0_se = tf$se.k0, side = tf$side, estimator = "L0", k = tf$k,
    beta = c(tf$beta), se = tf$se, pval = tf$pval, ci_lb = tf$ci.lb, ci_ub = tf$ci.ub, tau2 = tf$tau2,
    yi = vec(tf$yi), vi = vec(tf$vi), fill = I(as.logical(tf$fill)))
  notes <- c(notes, sprintf(paste(
    "trimfill <- trimfill(fit, control = list(threshold = 1e-12, maxiter = 1000)) (estimator \"L0\",",
    "side chosen by the sign of the sqrt(vi) slope; control passed on to its rma.uni refits);",
    "yi/vi/fill: the filled data (studies in agg order, then the %d filled ones);",
    "trimfill(fit) with default control gives the same k0 = %d and side, tau2 rel diff %s"),
    tf$k0, tf$k0, fmt(abs(tf_default$tau2 - tf$tau2) / max(tf$tau2, 1e-300))))

  sw <- with_warnings(selmodel(fit, type = "stepfun", steps = c(0.025, 1)))
  sm <- sw$value
  for (w in sw$warnings) notes <- c(notes, paste("metafor warning (selmodel):", w))
  sm_block <- function(sm) list(
    beta = c(sm$beta), se = sm$se, pval = sm$pval, ci_lb = sm$ci.lb, ci_ub = sm$ci.ub,
    tau2 = sm$tau2, tau2_se = sm$se.tau2,
    steps = vec(sm$steps), k_steps = vec(sm$ptable$k),
    delta = sm$delta[2], delta_se = sm$se.delta[2],
    LRT = sm$LRT, LRT_df = sm$LRTdf, LRTp = sm$LRTp,
    logLik = sm$ll, logLik0 = sm$ll0)
  expect$selmodel <- sm_block(sm)
  # The selection-model likelihood is flat: compare with two tightly converged refits by different
  # optimisers and with the fit started from the default-control rma() fit.
  sm_alt <- list(
    bfgs = selmodel(fit, type = "stepfun", steps = c(0.025, 1), control = list(reltol = 1e-14)),
    nm = selmodel(fit, type = "stepfun", steps = c(0.025, 1),
                  control = list(optimizer = "Nelder-Mead", reltol = 1e-15, maxit = 1e5)),
    dflt = suppressWarnings(selmodel(fit_default, type = "stepfun", steps = c(0.025, 1))))
  sm_keys <- c("beta", "se", "pval", "ci_lb", "ci_ub", "tau2", "tau2_se", "delta", "delta_se", "LRT",
               "LRTp", "logLik")
  spread <- vapply(sm_alt, function(alt) max_rel_diff(sm_block(alt), expect$selmodel, sm_keys), 0)
  spread_by_key <- vapply(sm_keys, function(key) max(vapply(sm_alt, function(alt)
    max_rel_diff(sm_block(alt), expect$selmodel, key), 0)), 0)
  # fraction of the by_block tolerance used by the worst disagreement (must stay well below 1)
  usage <- max(vapply(sm_alt, function(alt) tol_usage(sm_block(alt), expect$selmodel, sm_keys, 1e-3, 1e-6), 0))
  stopifnot(usage < 0.5)
  notes <- c(notes, paste(
    "selmodel <- selmodel(fit, type = \"stepfun\", steps = c(0.025, 1)) (default control): three-parameter",
    "selection model (beta, tau2, delta) fitted by ML; delta = weight of one-sided p-values",
    "(alternative = \"greater\") in (0.025, 1] relative to p <= 0.025 (fixed at 1); k_steps = number of",
    "studies per interval; LRT/LRT_df/LRTp: test of delta = 1; logLik0: ML log-likelihood without",
    "selection; se, tau2_se, delta_se from a numerical Hessian (numDeriv, r = 6); ci_lb/ci_ub Wald z",
    "intervals for beta"))
  notes <- c(notes, sprintf(paste(
    "selmodel precision: max rel diff to refits with control = list(reltol = 1e-14) (BFGS) %s, with",
    "control = list(optimizer = \"Nelder-Mead\", reltol = 1e-15) %s, started from the default-control",
    "rma fit %s; largest per key: %s; largest |diff|/max(1e-6, 1e-3*|value|) = %s"),
    fmt(spread[["bfgs"]]), fmt(spread[["nm"]]), fmt(spread[["dflt"]]),
    paste(names(spread_by_key), fmt(spread_by_key), collapse = ", "), fmt(usage)))
  notes <- c(notes, paste(
    "tolerance by_block selmodel: rel 1e-3, abs 1e-6: the likelihood is flat in (tau2, delta), so",
    "metafor's optimiser (BFGS, reltol 1e-8) and the numerical Hessian fix the estimates and",
    "standard errors only to ~1e-4 relative (tightly converged refits by different optimisers",
    "disagree by up to that much; see the note above)"))
  notes <- c(notes, sprintf(paste(
    "data: %s holds agg (%s, yi, vi; written with round-trip digits), the data of every model here;",
    "preprocess says how it was made from %s"), agg_file, cluster, data_file))
  if (!is.null(extra_note)) notes <- c(notes, extra_note)

  write_case(list(
    case = name, source = SOURCE, data = agg_file,
    escalc = NULL, yi = "yi", vi = "vi",
    preprocess = list(type = "aggregate", source_data = data_file, escalc = escalc_spec, cluster = cluster,
                      rho = 0.5, struct = "CS"),
    random = I(cluster), mods = NULL, method = "REML", test = "z", dfs = "residual",
    coef_names = I(rownames(fit_mv$beta)),
    expect = expect,
    tolerance = tolerance(list(selmodel = list(rel = 1e-3, abs = 1e-6))),
    notes = I(notes)
  ))
}

agg_case("agg_alliance_like_z", "alliance_like.csv", zcor, ztor = TRUE)
agg_case("agg_assink2016_z", "assink2016.csv", NULL, ztor = FALSE)
# Extra case: both cases above have k0 = 0 in trimfill; schools aggregated to districts give k0 = 2.
agg_case("agg_konstantopoulos2011_z", "konstantopoulos2011.csv", NULL, ztor = FALSE, cluster = "district",
         extra_note = paste("extra case (beyond alliance_like/assink2016): added because trimfill finds",
                            "k0 = 0 there; here k0 > 0, so the filled yi/vi are exercised"))

# =============================================================================================
# Group 3: simulated hard cases (core keys only, intercept-only, REML, test = "t", dfs = "contain")
# =============================================================================================

# Simulated two-level data: n_per[i] effects in study i, true variances s2 (study, es).
sim_two_level <- function(n_per, vi, mu, s2) {
  k <- sum(n_per)
  study <- rep(seq_along(n_per), n_per)
  es <- sequence(n_per)
  u <- rnorm(length(n_per), 0, sqrt(s2[1]))[study]
  w <- rnorm(k, 0, sqrt(s2[2]))
  e <- rnorm(k, 0, sqrt(vi))
  data.frame(study = study, es = es, yi = mu + u + w + e, vi = vi)
}

hard_case <- function(name, df, note_design, digits = 10) {
  df$yi <- round_sig(df$yi, digits)
  df$vi <- round_sig(df$vi, digits)
  file <- paste0(name, ".csv")
  write_csv_exact(df, file)
  d <- read_exact(file.path(out_data, file))
  stopifnot(identical(d$yi, df$yi), identical(d$vi, df$vi))
  notes <- c("SIMULATED data (not real studies)", note_design,
             sprintf("yi and vi rounded to %d significant digits before fitting; the csv reads back to the identical doubles", digits))
  fw <- with_warnings(rma.mv(yi, vi, random = ~ 1 | study/es, data = d, method = "REML",
                             test = "t", dfs = "contain"))
  fit <- fw$value
  notes <- c(notes, "fit <- rma.mv(yi, vi, random = ~ 1 | study/es, data = dat, method = \"REML\", test = \"t\", dfs = \"contain\")")
  if (length(fw$warnings)) notes <- c(notes, paste("metafor warning:", fw$warnings))
  expect <- core_keys(fit)
  notes <- c(notes, exact_check_note(fit, d$study, function(s2) {
    suppressWarnings(rma.mv(yi, vi, random = ~ 1 | study/es, data = d, method = "REML", test = "t",
                            dfs = "contain", sigma2 = s2))
  }))
  expect$predict <- predict_block(fit)
  write_case(list(
    case = name, source = SOURCE, data = file, escalc = NULL, yi = "yi", vi = "vi",
    random = I(c("study", "es")), mods = NULL, method = "REML", test = "t", dfs = "contain",
    coef_names = I(rownames(fit$beta)),
    expect = expect, tolerance = tolerance(), notes = I(notes)))
  invisible(list(fit = fit, expect = expect))
}

# (a) near-zero variance components at both levels
set.seed(20240601)
n_per <- sample(1:5, 40, replace = TRUE)
ni <- sample(50:500, sum(n_per), replace = TRUE)
df_a <- sim_two_level(n_per, vi = 1 / (ni - 3), mu = 0.2, s2 = c(1e-6, 1e-6))
df_a <- cbind(df_a[c("study", "es")], ni = ni, df_a[c("yi", "vi")])
hard_a <- hard_case("hard_near_zero_sigma2", df_a, sprintf(paste(
  "design: %d studies with 1-5 effects (k = %d), vi = 1/(ni - 3), ni in 50..500, mu = 0.2,",
  "true sigma2 = (1e-6, 1e-6): both components essentially zero"), length(n_per), sum(n_per)))

# (b) vi over 8 orders of magnitude
set.seed(20240602)
n_per <- sample(1:4, 30, replace = TRUE)
k <- sum(n_per)
vi_b <- 10^runif(k, -6, 2)
vi_b[c(1, k)] <- c(1e-6, 1e2)
df_b <- sim_two_level(n_per, vi = vi_b, mu = 0.3, s2 = c(0.05, 0.02))
hard_b <- hard_case("hard_vi_range", df_b, sprintf(paste(
  "design: %d studies with 1-4 effects (k = %d), vi = 10^U(-6, 2) with vi = 1e-6 (first row) and",
  "1e2 (last row), mu = 0.3, true sigma2 = (0.05, 0.02)"), length(n_per), k))

# (c) one study with most of the weight
set.seed(20240603)
n_per <- sample(1:4, 25, replace = TRUE)
ni <- sample(30:300, sum(n_per), replace = TRUE)
big <- which(rep(seq_along(n_per), n_per) == 7)
ni[big] <- 1e6
df_c <- sim_two_level(n_per, vi = 1 / (ni - 3), mu = 0.15, s2 = c(0.02, 0.01))
df_c <- cbind(df_c[c("study", "es")], ni = ni, df_c[c("yi", "vi")])
hard_c <- hard_case("hard_dominant_study", df_c, sprintf(paste(
  "design: %d studies with 1-4 effects (k = %d), vi = 1/(ni - 3); study 7 has ni = 1e6 for its %d",
  "effect(s) (vi ~ 1e-6), the others ni in 30..300; mu = 0.15, true sigma2 = (0.02, 0.01)"),
  length(n_per), sum(n_per), length(big)))

# (d) one study with 500 effect sizes among 30 other studies
set.seed(20240604)
n_per <- c(sample(1:5, 15, replace = TRUE), 500, sample(1:5, 15, replace = TRUE))
ni <- sample(40:400, sum(n_per), replace = TRUE)
df_d <- sim_two_level(n_per, vi = 1 / (ni - 3), mu = 0.25, s2 = c(0.04, 0.01))
df_d <- cbind(df_d[c("study", "es")], ni = ni, df_d[c("yi", "vi")])
hard_d <- hard_case("hard_big_cluster", df_d, sprintf(paste(
  "design: 31 studies; study 16 has 500 effects, the other 30 have 1-5 (k = %d); vi = 1/(ni - 3),",
  "ni in 40..400, mu = 0.25, true sigma2 = (0.04, 0.01)"), sum(n_per)))

# (e) 100000 studies with one effect each, random = ~ 1 | study
#
# metafor cannot fit this in reasonable time/memory here: rma.uni allocates k x k matrices
# (diag(vi): 74.5 GB for k = 1e5, also with method = "DL" or a fixed tau2), and rma.mv(sparse = TRUE)
# builds dense k x k pieces too (k = 1e4 already takes ~4 minutes). The model is the ordinary
# random-effects model rma(yi, vi, method = "REML", test = "t"); its keys are computed below with
# metafor's formulas for that model (REML root by uniroot on the closed-form score) and the same
# code is checked against metafor on the first 2000 studies (rma() on k = 2000 takes ~20 s).
re_reml_direct <- function(yi, vi) {
  k <- length(yi); p <- 1
  score <- function(t2) {
    w <- 1 / (vi + t2); sw <- sum(w); mu <- sum(w * yi) / sw
    -sum(w) + sum(w^2) / sw + sum(w^2 * (yi - mu)^2)
  }
  if (score(0) <= 0) {
    tau2 <- 0
  } else {
    hi <- 1
    while (score(hi) > 0) hi <- hi * 10
    tau2 <- uniroot(score, c(0, hi), tol = 1e-300, maxiter = 10000)$root
  }
  w <- 1 / (vi + tau2); sw <- sum(w)
  beta <- sum(w * yi) / sw; vb <- 1 / sw; se <- sqrt(vb)
  df <- k - p
  stat <- beta / se
  pval <- 2 * pt(abs(stat), df = df, lower.tail = FALSE)
  crit <- qt(0.975, df = df)
  wf <- 1 / vi
  QE <- sum(wf * (yi - sum(wf * yi) / sum(wf))^2)
  RSS <- sum(w * (yi - beta)^2)
  ll <- -1/2 * (k - p) * log(2 * base::pi) + 1/2 * log(k) - 1/2 * sum(log(vi + tau2)) - 1/2 * log(sw) - 1/2 * RSS
  parms <- p + 1
  list(
    k = k, p = p, n_levels = vec(k), sigma2 = vec(tau2),
    beta = vec(beta), se = vec(se), stat = vec(stat), df = vec(df), pval = vec(pval),
    ci_lb = vec(beta - crit * se), ci_ub = vec(beta + crit * se), vcov = list(vec(vb)),
    QE = QE, QE_df = k - p, QEp = pchisq(QE, df = k - p, lower.tail = FALSE),
    QM = stat^2, QM_df = vec(c(1, df)), QMp = pf(stat^2, df1 = 1, df2 = df, lower.tail = FALSE),
    logLik = ll, deviance = -2 * ll, AIC = -2 * ll + 2 * parms, BIC = -2 * ll + parms * log(k - p),
    AICc = -2 * ll + 2 * parms * max(k - p, parms + 2) / (max(k - p, parms + 2) - parms - 1),
    predict = list(pred = beta, se = se, ci_lb = beta - crit * se, ci_ub = beta + crit * se,
                   pi_lb = beta - crit * sqrt(vb + tau2), pi_ub = beta + crit * sqrt(vb + tau2))
  )
}

set.seed(20240605)
k_e <- 100000
vi_e <- round_sig(1 / (sample(20:500, k_e, replace = TRUE) - 3), 8)
yi_e <- round_sig(rnorm(k_e, 0.1, sqrt(0.01 + vi_e)), 8)
df_e <- data.frame(study = seq_len(k_e), yi = yi_e, vi = vi_e)
file_e <- "hard_many_studies.csv"
# 8 significant digits: the shortest strings that read back to these doubles have <= 8 digits.
write_csv_exact(df_e, file_e)
d_e <- read_exact(file.path(out_data, file_e))
stopifnot(identical(d_e$yi, yi_e), identical(d_e$vi, vi_e))

tick("hard_many_studies: data written")
expect_e <- re_reml_direct(d_e$yi, d_e$vi)
tick("hard_many_studies: direct fit done")
# Check the direct computation against metafor on a subset where metafor is feasible.
sub <- seq_len(2000)
direct_sub <- re_reml_direct(d_e$yi[sub], d_e$vi[sub])
mv_sub <- rma.mv(yi, vi, random = ~ 1 | study, data = d_e[sub, ], method = "REML", test = "t",
                 dfs = "contain", sparse = TRUE)
mv_sub_keys <- core_keys(mv_sub); mv_sub_keys$predict <- predict_block(mv_sub)
uni_sub <- rma(yi, vi, data = d_e[sub, ], method = "REML", test = "t", control = TIGHT_UNI)
uni_sub_keys <- core_keys(uni_sub); uni_sub_keys$predict <- predict_block(uni_sub)
all_keys <- c("sigma2", "beta", "se", "stat", "df", "pval", "ci_lb", "ci_ub", "vcov", "QE", "QE_df", "QEp",
              "QM", "QM_df", "QMp", "logLik", "deviance", "AIC", "BIC", "AICc", "predict", "n_levels", "k", "p")
# rma.mv's default nlminb fit is only accurate to ~1e-6 in sigma2 here; with t = 33.7 on the subset
# the p-values (~5e-198) magnify that to ~2e-4 relative, so they are left out of the rma.mv comparison.
d_mv <- max_rel_diff(direct_sub, mv_sub_keys, setdiff(all_keys, c("pval", "QMp")))
d_mv_p <- max_rel_diff(direct_sub, mv_sub_keys, c("pval", "QMp"))
d_uni <- max_rel_diff(direct_sub, uni_sub_keys, all_keys)
stopifnot(d_mv < TOL_REL, d_uni < 1e-10)
tick("hard_many_studies: subset check against metafor done")

write_case(list(
  case = "hard_many_studies", source = SOURCE, data = file_e, escalc = NULL, yi = "yi", vi = "vi",
  random = I("study"), mods = NULL, method = "REML", test = "t", dfs = "contain",
  coef_names = I("intrcpt"),
  expect = expect_e, tolerance = tolerance(),
  notes = I(c(
    "SIMULATED data (not real studies)",
    "design: k = 100000 studies with one effect each; vi = 1/(n - 3), n in 20..500; yi ~ N(0.1, 0.01 + vi); yi and vi rounded to 8 significant digits BEFORE fitting; the csv reads back to the identical doubles",
    "model: rma.mv(yi, vi, random = ~ 1 | study, method = \"REML\", test = \"t\", dfs = \"contain\") = rma(yi, vi, method = \"REML\", test = \"t\") (df = k - 1 = 99999 both ways)",
    "NOT a direct metafor fit: in metafor 3.8-1 rma() allocates k x k matrices (diag(vi) alone is 74.5 GB for k = 1e5; fails also with method = \"DL\" or a fixed tau2) and rma.mv(sparse = TRUE) builds dense k x k pieces (k = 1e4 took ~4 min, k = 1e5 infeasible)",
    "values computed in R with metafor's formulas for this model: tau2 = root of the REML score -sum(w) + sum(w^2)/sum(w) + sum(w^2 (yi - b)^2) (uniroot, tol 1e-300; 0 if the score at 0 is <= 0), w = 1/(vi + tau2), b = sum(w yi)/sum(w), se = 1/sqrt(sum(w)); t(k-1) tests/CIs; QE with w = 1/vi; QMp = pf(stat^2, 1, k-1); logLik = -(k-1)/2 log(2 pi) + 1/2 log(k) - 1/2 sum(log(vi + tau2)) - 1/2 log(sum(w)) - 1/2 sum(w (yi - b)^2) (metafor's restricted log-likelihood incl. its 1/2 log|X'X| term); AIC/BIC/AICc with 2 parameters and k - 1 for BIC/AICc; predict pi = b +- qt(.975, k-1) sqrt(se^2 + tau2)",
    sprintf("check of that code on the first 2000 studies against metafor: max rel diff %s over all core keys and predict vs rma(yi, vi, method = \"REML\", test = \"t\", control = list(threshold = 1e-12, maxiter = 1000)); vs rma.mv(yi, vi, random = ~ 1 | study, sparse = TRUE, test = \"t\", dfs = \"contain\") with default nlminb settings max rel diff %s (all keys but pval/QMp) and %s in pval/QMp (t = %s there, p = %s: the relative condition number of so small a p-value is about t^2, so a ~1e-7 relative error in se is magnified about %s-fold)",
            fmt(d_uni), fmt(d_mv), fmt(d_mv_p), fmt(direct_sub$stat), fmt(direct_sub$pval), fmt(direct_sub$stat^2)),
    sprintf("pval = %s and QMp = %s here (t = %s with %d df; 0 = underflow); they pass through the abs tolerance",
            num_strs(expect_e$pval), num_strs(expect_e$QMp), fmt(expect_e$stat), k_e - 1)
  ))
))

elapsed <- proc.time()[["elapsed"]] - t_start
cat(sprintf("done in %.1f s\n", elapsed))
