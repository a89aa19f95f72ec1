"""tunecli as functions, for notebooks and scripts; the CLI parses options, calls these, and
prints. Nothing here prints unless asked (``progress``); what a user should read comes back as
text (``notes``) or as a ``SpecError`` (bad input, its ``line()`` says where and the fix).

A session::

    from tunecli import api
    study = api.search("studies/digits.yaml", n_trials=20, seed=0)  # an optuna.Study
    api.best_trial(study).params                   # or api.pareto_front(study)
    model = api.train(study, out="models/digits")  # retrained, tested once, saved
    model.info["test_metrics"]                     # what the test part said
    model = api.load_model("models/digits.json")   # raw inputs in, probabilities out
    api.predict("models/digits.json", "new.npz").labels()
"""

from tunecli.api.models import held_out_part, load_model, predict, train
from tunecli.api.running import run_here
from tunecli.api.studies import (
    Opened,
    Served,
    best_trial,
    budget_met,
    choose_for_training,
    dashboard,
    list_studies,
    open_for_resume,
    open_for_search,
    pareto_front,
    search,
    wait_for_study,
)

__all__ = [
    "Opened",
    "Served",
    "best_trial",
    "budget_met",
    "choose_for_training",
    "dashboard",
    "held_out_part",
    "list_studies",
    "load_model",
    "open_for_resume",
    "open_for_search",
    "pareto_front",
    "predict",
    "run_here",
    "search",
    "train",
    "wait_for_study",
]
