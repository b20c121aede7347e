# Profile-likelihood CIs and likelihood-ratio tests per random-effects term from metafor 3.8-1,
# for the random-effects structures reference cases.
#
# Reads the cases in tests/fixtures/reference_structures/cases/ (their data, V, R and metafor
# call; see that folder's README.md) and writes tests/fixtures/reference_structures_profile/
# <case>.json. Run from the repository root:
#
#     Rscript scripts/make_reference_structures_profile.R
#
# Per case:
#   - `profile_ci`: confint(fit, sigma2 = j) / tau2 = j / rho = j / gamma2 = j / phi = j for every
#     estimated component, with control = list(tol = 1e-10) (uniroot's tolerance on the bound);
#     `lb_sign`/`ub_sign` are metafor's "<" / ">" marks of a bound at the end of the searched
#     interval, and `warnings` any warning of confint() (a bound it could not obtain is null).
#   - `lrt`: anova(full, reduced) for each `~ 1 | ...` component (the reduced model has that
#     sigma2 fixed at 0) and for each `~ inner | outer` term (the reduced model is refitted
#     without the term; no term left = the model with the sampling covariance only).
# The model fits (and the refits inside confint/anova) use bobyqa with rhoend = 1e-12 (nlminb
# with a tight rel.tol reports false convergence on some refits, and with its defaults stops
# short of the optimum on some cases). When confint() cannot obtain a bound that way (a profile
# refit fails), or when another optimiser finds a higher profile log-likelihood at a bound than
# the cut-off (a profile refit that stopped at its start values moves the bound: bobyqa does so
# for two UN correlations of multivar_labs_t), confint() is rerun on the model refitted with
# metafor's default optimiser, then BFGS, then hjk, and the first result without a warning
# whose bounds are verified that way is kept; `control` records the one used.
#
# Numbers are written by jsonlite with 15 significant digits (the tests compare at 1e-4 and
# finer; 15 digits are far below that).

suppressMessages({
  library(metafor)
  library(jsonlite)
})
if (packageVersion("metafor") != "3.8.1") {
  stop("expected metafor 3.8-1, found ", as.character(packageVersion("metafor")))
}

src <- "tests/fixtures/reference_structures"
out_dir <- "tests/fixtures/reference_structures_profile"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
cases <- c("crossed_lab_t", "crossed_lab_ml_z", "berkey1998_un_t", "berkey1998_cs_t",
           "ishak2007_ar_t", "lim2014_phylo_t", "assink2016_che_t", "multivar_labs_t",
           "multivar_labs_har_z")
ctrl <- list(optimizer = "bobyqa", rhoend = 1e-12)
# when confint() with ctrl cannot obtain a bound (a refit fails), it is rerun with these, in turn
fallback <- list(list(), list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-14),
                 list(optimizer = "hjk", tol = 1e-12, maxfeval = 1e5))

read_V <- function(path, k) {
  lv <- read.csv(path)
  V <- matrix(0, k, k)
  V[cbind(lv$row, lv$col)] <- lv$value
  V[cbind(lv$col, lv$row)] <- lv$value
  V
}

num <- function(x) if (is.null(x) || length(x) == 0 || is.na(x)) NULL else unname(x)

# cases defined here (no case file in reference_structures): a '~ 1 | ...' component next to a
# heteroscedastic '~ inner | outer' term; the definition is written into the output (`definition`)
extra <- list(
  multivar_labs_har_z = list(
    data = "multivar_labs.csv", escalc = NULL, yi = "yi", vi = "vi",
    random_terms = c("~ 1 | study", "~ outcome | lab"), struct = "HAR", R = NULL, V = NULL,
    rho = NULL, mods = "~ 0 + outcome", method = "REML", test = "z", dfs = "residual"))

one_case <- function(name) {
  case <- if (!is.null(extra[[name]])) extra[[name]] else
    fromJSON(file.path(src, "cases", paste0(name, ".json")), simplifyVector = TRUE)
  dat <- read.csv(file.path(src, "data", case$data))
  if (!is.null(case$escalc)) {
    e <- case$escalc
    dat <- escalc(measure = e$measure, ri = dat[[e$ri]], ni = dat[[e$ni]], data = dat)
  }
  k <- nrow(dat)
  if (!is.null(case$V)) {
    V <- read_V(file.path(src, "data", case$V), k)
  } else if (!is.null(case$rho)) {
    V <- vcalc(dat$vi, cluster = dat[[case$rho$cluster]], obs = seq_len(k), rho = case$rho$value)
  } else {
    V <- dat$vi
  }
  Rl <- NULL
  if (!is.null(case$R)) {
    Rl <- list()
    for (f in names(case$R)) {
      m <- as.matrix(read.csv(file.path(src, "data", case$R[[f]]), row.names = 1,
                              check.names = FALSE))
      Rl[[f]] <- m
    }
  }
  terms <- case$random_terms
  struct <- if (is.null(case$struct)) character(0) else case$struct
  random <- lapply(terms, as.formula)
  # rma.mv looks V and R up as arguments, not in data: keep them in a list
  fitf <- function(random, struct, sigma2 = NULL, control = ctrl, fixed = NULL, comp = NULL) {
    args <- list(yi = dat$yi, V = V, data = dat, method = case$method, test = case$test,
                 dfs = case$dfs, control = control)
    if (!is.null(fixed)) {
      # the profile refit: every other parameter free (none is fixed in these cases)
      vals <- rep(NA_real_, length(fit$vc.fix[[comp]]))
      vals[fixed$pos] <- fixed$val
      args[[comp]] <- vals
    }
    if (!is.null(case$mods)) args$mods <- as.formula(case$mods)
    if (length(random)) args$random <- random
    if (length(struct)) args$struct <- struct
    if (!is.null(Rl)) args$R <- Rl
    if (!is.null(sigma2)) args$sigma2 <- sigma2
    do.call(rma.mv, args)
  }
  fit <- fitf(random, struct)
  is_io <- grepl("^~\\s*[^1 ][^|]*\\|", terms)
  io_terms <- terms[is_io]
  lv <- lapply(seq_along(io_terms), function(j) as.character(fit$g.levels.f[[j]]))
  if (length(io_terms) >= 2) lv[[2]] <- as.character(fit$h.levels.f[[1]])
  # ---- profile CIs
  comps <- list()
  label <- function(comp, pos) {
    if (comp == "sigma2") return(paste0("sigma2[", fit$s.names[pos], "]"))
    j <- if (comp %in% c("tau2", "rho")) 1 else 2
    n <- length(fit[[comp]])
    l <- lv[[j]]
    # as mlmeta's printout: UN correlations are always named by their pair of inner levels
    if (n == 1 && !(comp %in% c("rho", "phi") && struct[j] == "UN" && length(l) > 1))
      return(comp)
    if (comp %in% c("tau2", "gamma2")) return(paste0(comp, "[", l[pos], "]"))
    pr <- which(lower.tri(matrix(0, length(l), length(l))), arr.ind = TRUE)
    pr <- pr[order(pr[, 2], pr[, 1]), , drop = FALSE]
    paste0(comp, "[", l[pr[pos, 2]], "-", l[pr[pos, 1]], "]")
  }
  for (comp in c("sigma2", "tau2", "rho", "gamma2", "phi")) {
    fx <- fit$vc.fix[[comp]]
    if (is.null(fx) || (comp == "sigma2" && !fit$withS)) next
    if (comp %in% c("tau2", "rho") && !fit$withG) next
    if (comp %in% c("gamma2", "phi") && !fit$withH) next
    for (pos in seq_along(fx)) {
      if (fx[pos]) next
      run <- function(f) {
        w <- character(0)
        args <- list(f, control = list(tol = 1e-10))
        args[[comp]] <- pos
        ci <- withCallingHandlers(do.call(confint, args), warning = function(cond) {
          w <<- c(w, conditionMessage(cond))
          invokeRestart("muffleWarning")
        })
        list(ci = ci, w = w)
      }
      # a confint() result is kept when no optimiser finds a higher profile log-likelihood at
      # its bounds than the cut-off (refits with one parameter fixed can stop at their start
      # values, which moves the bound; see the README of the fixtures)
      cut <- as.numeric(logLik(fit)) - qchisq(0.95, 1) / 2
      prof_max <- function(val) {
        lls <- sapply(c(list(ctrl), fallback), function(cc) {
          f <- try(suppressWarnings(fitf(random, struct, control = cc,
                                         fixed = setNames(list(val, pos), c("val", "pos")),
                                         comp = comp)), silent = TRUE)
          if (inherits(f, "try-error")) NA else as.numeric(logLik(f))
        })
        max(lls, na.rm = TRUE)
      }
      verify <- function(ci) {
        r <- ci$random
        ok <- TRUE
        for (b in c("ci.lb", "ci.ub")) {
          val <- r[1, b]
          if (is.na(val)) next
          m <- prof_max(val)
          # a bound at the end of the searched interval lies inside the CI: nothing to verify
          ends <- (b == "ci.lb" && (val == 0 || val == -1 || ci$lb.sign == "<")) ||
                  (b == "ci.ub" && (val == 1 || ci$ub.sign == ">"))
          if (!ends && !(abs(m - cut) < 1e-6)) ok <- FALSE
        }
        ok
      }
      tried <- c(list(ctrl), fallback)
      got <- NULL
      used <- NULL
      for (cc in tried) {
        f <- if (identical(cc, ctrl)) fit else fitf(random, struct, control = cc)
        this <- run(f)
        if (!length(this$w) && verify(this$ci)) {
          got <- this
          used <- if (length(cc)) paste(names(cc), unlist(cc), sep = " = ", collapse = ", ")
                  else "metafor's default (nlminb)"
          break
        }
        if (is.null(got)) {
          got <- this
          used <- "bobyqa, rhoend = 1e-12 (no optimiser gave verified bounds)"
        }
      }
      ci <- got$ci
      w <- got$w
      r <- ci$random
      comps[[length(comps) + 1]] <- list(
        component = label(comp, pos), comp = comp, pos = pos,
        estimate = num(r[1, "estimate"]), ci_lb = num(r[1, "ci.lb"]),
        ci_ub = num(r[1, "ci.ub"]), lb_sign = ci$lb.sign, ub_sign = ci$ub.sign,
        warnings = I(w), control = used)
    }
  }
  # ---- LRTs
  lrts <- list()
  add_lrt <- function(dropped, red, kind) {
    a <- anova(fit, red)
    lrts[[length(lrts) + 1]] <<- list(
      dropped = dropped, kind = kind, LRT = num(a$LRT), df = num(a$parms.f - a$parms.r),
      pval = num(a$pval), logLik_reduced = num(as.numeric(logLik(red))),
      AIC_reduced = num(AIC(red)), BIC_reduced = num(BIC(red)))
  }
  if (fit$withS) {
    for (j in seq_along(fit$sigma2)) {
      if (fit$vc.fix$sigma2[j]) next
      s2 <- ifelse(fit$vc.fix$sigma2, fit$sigma2, NA)
      s2[j] <- 0
      add_lrt(paste0("sigma2[", fit$s.names[j], "]"), fitf(random, struct, sigma2 = s2),
              "sigma2")
    }
  }
  for (j in seq_along(io_terms)) {
    keep <- terms[!(terms == io_terms[j])]
    st <- struct[-j]
    add_lrt(io_terms[j], fitf(lapply(keep, as.formula), st), "inner_outer")
  }
  res <- list(case = name, source = paste0("metafor ", packageVersion("metafor"), ", ",
                                           R.version.string),
              definition = if (!is.null(extra[[name]])) case else NULL,
              level = 95, logLik = as.numeric(logLik(fit)),
              sigma2 = if (fit$withS) unname(fit$sigma2) else I(numeric(0)),
              profile_ci = comps, lrt = lrts,
              notes = c("confint(fit, <comp> = j, control = list(tol = 1e-10)) per component",
                        "fits: control = list(optimizer = 'bobyqa', rhoend = 1e-12)",
                        "lrt: anova(full, reduced); sigma2 components fixed at 0, inner|outer terms removed"))
  writeLines(toJSON(res, auto_unbox = TRUE, digits = I(17), null = "null", na = "null",
                    pretty = TRUE),
             file.path(out_dir, paste0(name, ".json")))
  cat(name, "done\n")
}

args <- commandArgs(trailingOnly = TRUE)
for (nm in if (length(args)) args else cases) one_case(nm)
