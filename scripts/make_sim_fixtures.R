# Reference values for mlmeta.sim.summarise from R's simhelpers (calc_absolute, calc_relative,
# calc_rejection, calc_coverage).
#
# Writes tests/fixtures/sim/simhelpers.json. Run from the repository root with the path of a
# copy of simhelpers' source (its R/ folder is sourced; the package itself need not be
# installed, only tibble):
#
#     Rscript scripts/make_sim_fixtures.R /path/to/simhelpers
#
# The inputs are random numbers drawn here (set.seed), written to the JSON with the results, so
# the test needs no R. Doubles are written by jsonlite with 15 significant digits (the tests
# compare with tolerances far above that rounding).

suppressMessages({
  library(tibble)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 1) stop("usage: Rscript scripts/make_sim_fixtures.R /path/to/simhelpers")
for (f in c("utilities.R", "calc_absolute.R", "calc_relative.R", "calc_rejection.R",
            "calc_coverage.R")) {
  source(file.path(args[1], "R", f))
}
version <- read.dcf(file.path(args[1], "DESCRIPTION"), fields = "Version")[1, 1]

one <- function(name, est, p, lb, ub, theta, alpha) {
  a <- calc_absolute(estimates = est, true_param = theta)
  r <- calc_relative(estimates = est, true_param = theta)
  j <- calc_rejection(p_values = p, alpha = alpha)
  cv <- calc_coverage(lower_bound = lb, upper_bound = ub, true_param = theta)
  lst <- function(d) lapply(as.list(d), function(x) as.numeric(x))
  list(case = name, true_param = theta, alpha = alpha,
       estimates = I(est), p_values = I(p), lower_bound = I(lb), upper_bound = I(ub),
       calc_absolute = lst(a), calc_relative = lst(r), calc_rejection = lst(j),
       calc_coverage = lst(cv))
}

set.seed(20240601)
cases <- list()
# skewed estimates (so that the skewness and kurtosis terms matter), theta > 0
est <- 0.3 + rexp(60, rate = 8) - 0.1
se <- runif(60, 0.05, 0.15)
cases[[1]] <- one("skewed_positive", est, 2 * pnorm(-abs(est / se)), est - 1.96 * se,
                  est + 1.96 * se, 0.3, 0.05)
# negative theta, missing values in every input
est <- rnorm(40, -0.2, 0.1)
se <- runif(40, 0.05, 0.12)
p <- 2 * pnorm(-abs(est / se))
lb <- est - 2 * se
ub <- est + 2 * se
est[c(3, 17)] <- NA
p[c(5, 6, 30)] <- NA
lb[8] <- NA
ub[9] <- NA
cases[[2]] <- one("negative_with_missing", est, p, lb, ub, -0.25, 0.1)
# theta = 0 (relative criteria undefined)
est <- rt(25, df = 4) * 0.05
se <- rep(0.05, 25)
cases[[3]] <- one("zero_theta", est, 2 * pt(-abs(est / se), 4), est - 2.776 * se,
                  est + 2.776 * se, 0, 0.05)

writeLines(toJSON(list(source = sprintf("simhelpers %s (calc_*.R sourced), R %s", version,
                                        getRversion()),
                       cases = cases),
                  auto_unbox = TRUE, digits = I(17), na = "null", pretty = TRUE),
           file.path("tests", "fixtures", "sim", "simhelpers.json"))
cat("wrote", length(cases), "cases\n")
