"""The prior strengths of the online learner's corrections (:mod:`graphrouter.online`), and where they come from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphrouter.logit_fit import FitPrior


@dataclass(frozen=True)
class Priors:
    """Prior strengths (in outcomes) of the correction and its neighbour kernel. The defaults for a trained candidate
    are the best point of ``experiments/online.py``'s grid on dcrouter's validation queries (routing them under
    partial feedback, known LLMs only, mean reward over Performance First and Balance): 0.4544 against 0.4506 with
    no correction (κ = 1e4), a gain below the replay's own 2-standard-error rule; on MMLU-Pro no correction is best
    (0.5411) and this point scores 0.5391. The defaults until an operator audit saw a trained LLM's predictions move
    by 0.1 from live outcomes, 30/30/3, scored 0.4415 and 0.5338 (every grid point's score:
    ``experiments/results/online_<dataset>.md``). ``candidate`` and ``task`` also set, through :meth:`freshness`,
    the priors of a candidate registered with a few outcomes (at 20 of them: 89 and 32 outcomes, 12 and 12 under the
    old defaults), so such a candidate now moves more slowly with live outcomes; no benchmark measures that path."""

    candidate: float = 300.0
    task: float = 100.0
    neighbours: float = 10.0
    k: int = 10
    temperature: float = 0.05
    # a candidate with no outcomes behind its prediction (registered from its description only) can be far off:
    # its candidate and task levels take this weaker prior (residual variance ≈ 0.2 of a 0/1 effect over a prior
    # bias variance ≈ 0.2², i.e. ≈ 5 outcomes; not validated: no withheld LLM is left to validate it on)
    untrained: float = 5.0
    # how trained a candidate counts as: f = trained_scale / (trained_scale + n), with n the outcomes behind the
    # router's own prediction (1 for one registered from its description only, → 0 for one trained on thousands);
    # its prior strengths are f · untrained + (1 − f) · candidate (or task). 50: the GNN's validation of
    # few-outcome registration went up to 50 outcomes
    trained_scale: float = 50.0
    # the GNN's uncertainty penalty is margin / √(1 + n) (about two standard deviations of a 0/1 mean); an outcome
    # learned here counts f · penalty_weight there: for an untrained candidate about one standard deviation
    # (0.5 / √n) of its corrected estimate, for a trained one next to nothing (lowering the penalty of the
    # candidates routing picks most would make the rich richer)
    penalty_weight: float = 4.0
    # a candidate with no outcome behind the router's own prediction (registered from its description only) is not
    # corrected by the residual levels above but refitted (graphrouter.logit_fit.fit_resemblance, with the default
    # priors of the GNN's fit from outcomes, without its peers): its logit becomes a model average of its own and
    # the trained candidates' (freshness < 1/2) logits, by their evidence on its outcomes, plus per-task offsets.
    # This is the prior mass on its own logit (the GNN's fit_own); 1.0: off
    resemble_own: float = FitPrior.own

    def freshness(self, trained: np.ndarray) -> np.ndarray:
        """f per candidate, from the outcomes behind the router's own predictions."""
        return self.trained_scale / (self.trained_scale + np.maximum(np.asarray(trained, dtype=float), 0.0))
