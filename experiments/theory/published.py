"""The paper's published Figure 2 and Figure 3 values (docs/paper_spec.md section 6): written once, here."""

PAPER_QUARTER = 0.25  # the curve the paper draws and labels "a = n/2" is computed with a = n/4
FIG3_LEFT_N = (250, 500, 1000, 1500, 2000, 2500)
FIG3_RIGHT_S = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
PUBLISHED_FIGURE2 = {  # curve (a, or a / n) -> {n: the paper's theory value}
    64: {300: 1.09461662e-3, 500: 5.69571109e-6, 700: 1.41253231e-7},
    128: {300: 0.292078214, 500: 7.36788303e-3, 900: 2.50255520e-5},
    256: {300: 0.999997973, 1100: 3.50549722e-3, 3500: 2.23380881e-8},
    PAPER_QUARTER: {300: 5.186e-3, 3500: 7.017e-3},
}
PUBLISHED_FIGURE3_LEFT = {  # curve -> {n: the paper's simulated frequency}, S = 1
    64: dict(zip(FIG3_LEFT_N, (3.65e-3, 3.06e-4, 1.89e-5, 4.17e-6, 1.50e-6, 9.17e-7))),
    128: dict(zip(FIG3_LEFT_N, (2.45e-2, 3.64e-3, 3.16e-4, 6.93e-5, 2.17e-5, 8.67e-6))),
    256: dict(zip(FIG3_LEFT_N, (7.62e-2, 2.42e-2, 3.76e-3, 9.78e-4, 3.33e-4, 1.42e-4))),
    0.5: dict.fromkeys(FIG3_LEFT_N, 2.3e-2),  # the paper states "about 2.3e-2", flat
}
PUBLISHED_FIGURE3_RIGHT = {  # curve -> {S: the paper's simulated frequency}, n = 1000
    64: dict(zip(FIG3_RIGHT_S, (1.94e-5, 1.15e-3, 7.21e-3, 1.92e-2, 3.61e-2, 5.70e-2, 7.89e-2))),
    128: dict(zip(FIG3_RIGHT_S, (3.13e-4, 7.08e-3, 2.72e-2, 5.72e-2, 8.95e-2, 1.21e-1, 1.51e-1))),
    256: dict(zip(FIG3_RIGHT_S, (3.98e-3, 3.31e-2, 8.05e-2, 1.29e-1, 1.71e-1, 2.07e-1, 2.35e-1))),
}
QUARTER_NOTE = ("The a = n/4 rows are the curve the paper draws and labels 'a = n/2' "
                "(published to 4 significant digits).")
