"""Section 3 of the paper: the chance that a random sparse vector matches a stored one.

Binary vectors (Figure 2). A stored vector x has s active bits out of n; a random vector y has a
active bits, each of the C(n, a) choices equally likely. They match when the overlap x.y >= theta.
The random vectors with overlap exactly b form the set Omega(b):

    |Omega(b)| = C(s, b) C(n - s, a - b)          (b of x's bits, a - b of the n - s others)
    P(match)   = sum_{b = theta..s} |Omega(b)| / C(n, a)      (a hypergeometric upper tail)

evaluated in log space (log C from lgamma, then logsumexp), so it never overflows and is
accurate to about 1e-10 relative for any n (tested against exact integers up to n = 10,000).

Scalar vectors (Figure 3). A weight vector w has k_w non-zeros U_j / k_w, U ~ U(-1, 1), an input
x has a non-zeros 2 S V_j / k_w, V ~ U(0, 1) (S = scale), and they match when
w.x >= theta = E[w.w] / 2 = k_w E[U^2] / (2 k_w^2) = 1 / (6 k_w). With b ~ Hypergeometric(n, k_w,
a) shared positions, w.x = (2 S / k_w^2) sum_{j <= b} U_j V_j, so

    P(match) = sum_b P(b) P(U_1 V_1 + ... + U_b V_b >= t),      t = k_w / (12 S),

whose b-fold sums ``ScalarSumTails`` computes on a fine grid. The paper's runs include a = 256 at
n = 250; there the input is fully dense, i.e. a is clipped to n (which reproduces its value).
"""

import numpy as np
from scipy.signal import fftconvolve
from scipy.special import gammaln, logsumexp

def log_comb(n, k):
    """log C(n, k) elementwise; -inf where k < 0 or k > n."""
    n, k = np.asarray(n, float), np.asarray(k, float)
    ok = (k >= 0) & (k <= n)
    k, rest = np.where(ok, k, 0.0), np.where(ok, n - k, 0.0)
    return np.where(ok, gammaln(n + 1) - gammaln(k + 1) - gammaln(rest + 1), -np.inf)


def log_overlap_set_size(n, a, s, b):
    """log |Omega(b)| = log C(s, b) + log C(n - s, a - b): random a-of-n vectors with overlap
    exactly b with a fixed s-of-n vector. Broadcasts over all arguments."""
    return log_comb(s, b) + log_comb(np.asarray(n) - s, np.asarray(a) - np.asarray(b))


def overlap_pmf(n, a, s):
    """P(overlap = b) = |Omega(b)| / C(n, a) for b = 0..s (Hypergeometric(n, s, a)). # (s + 1,)"""
    b = np.arange(s + 1)
    return np.exp(log_overlap_set_size(n, a, s, b) - log_comb(n, a))


def log_match_probability(n, a, s, theta):
    """log P(overlap >= theta) = logsumexp_{b = theta..s} log |Omega(b)| - log C(n, a).
    Broadcasts over n and a (a <= n); -inf when a < theta."""
    n, a = np.asarray(n)[..., None], np.asarray(a)[..., None]
    b = np.arange(theta, s + 1)
    with np.errstate(divide="ignore"):
        return logsumexp(log_overlap_set_size(n, a, s, b), axis=-1) - log_comb(n, a)[..., 0]


def match_probability(n, a, s, theta):
    """P(match) of a random a-of-n binary vector against a stored s-of-n one (Figure 2)."""
    return np.exp(log_match_probability(n, a, s, theta))


# ---------------------------------------------------------------- numerical scalar theory

def product_cdf(z):
    """P(U V <= z) for U ~ U(-1, 1), V ~ U(0, 1): 1/2 + sign(z) (|z| - |z| ln|z|) / 2 on [-1, 1]
    (U V has density -ln|z| / 2)."""
    az = np.abs(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.where(az > 0, az - az * np.log(az), 0.0) / 2.0
    return 0.5 + np.sign(z) * half


class ScalarSumTails:
    """P(U_1 V_1 + ... + U_b V_b >= t) for b = 0..b_max, U ~ U(-1, 1), V ~ U(0, 1).

    U V's exact mass on each grid cell of width h = 1 / cells_per_unit sits at the cell centre;
    the b-fold sums are repeated convolutions (FFT). Each lattice mass of the sum is spread over
    its cell, i.e. the CDF is linearly interpolated between cell edges: error O(h^2).
    """

    def __init__(self, b_max, cells_per_unit):
        self.cells, self.h = cells_per_unit, 1.0 / cells_per_unit
        masses = np.diff(product_cdf(np.arange(-self.cells, self.cells + 1) * self.h))
        dist, self.cdfs = np.ones(1), [np.ones(1)]
        self._edges = {}
        for _ in range(b_max):
            dist = np.clip(fftconvolve(dist, masses), 0.0, None)
            self.cdfs.append(np.cumsum(dist))

    def tail(self, b, t):
        """P(sum of b products >= t)."""
        cdf = self.cdfs[b]
        if b not in self._edges:  # the cells' upper edges, made once per b (21k calls a run)
            self._edges[b] = (np.arange(len(cdf)) - b * self.cells + (b + 1) / 2) * self.h
        return 1.0 - float(np.interp(t, self._edges[b], cdf, left=0.0, right=1.0))


def scalar_threshold(k_w, scale):
    """t with w.x >= 1 / (6 k_w)  <=>  sum_j U_j V_j >= t = k_w / (12 S)."""
    return k_w / (12.0 * scale)


def scalar_match_probability(n, a, k_w, scale, tails):
    """P(w.x >= theta) = sum_b P(b) P(sum_{j <= b} U_j V_j >= k_w / (12 S)), a clipped to n."""
    pmf = overlap_pmf(n, min(a, n), k_w)
    t = scalar_threshold(k_w, scale)
    return sum(pmf[b] * tails.tail(b, t) for b in range(k_w + 1) if pmf[b] > 0)


