"""polybook: where polysemantic neurons come from.

The models, training loop, metrics, theory and experiments of the polybook tutorial on
*What Causes Polysemanticity?* (Lecomte et al., arXiv 2312.03096).

>>> import polybook as pb
>>> res = pb.train(pb.TrainConfig(n=8, m=16, steps=5), device="cpu", progress=False)
>>> tuple(res.W.shape)
(1, 8, 16)
"""

# First, before torch: MKL's reproducible mode must be chosen before MKL first runs (see _numerics).
from . import _numerics  # noqa: F401,I001
from .experiments import EXPERIMENTS, estimate_time, load_result, run_experiment, stored_result
from .metrics import (
    BAND,
    DEFINITION,
    RULES,
    band_mask,
    fourth_norm,
    polysemantic_neurons,
    polysemantic_neurons_by_mass,
    polysemantic_neurons_by_response,
    polysemantic_by_rule,
    polysemantic_sign_pattern,
    start_end_overlap,
    winner_initial_rank,
    winners,
)
from .models import init_weights, loss_and_grad, reconstruction, reconstruction_loss
from .theory import (
    expected_colliding_pairs,
    expected_polysemantic_exact,
    predicted_polysemantic,
    simulate_collisions,
)
from . import display, plots
from .train import TrainConfig, TrainResult, device_report, resolve_device, sample_noise, train

# The public API is this list and each documented module's ``__all__``: the names a chapter uses, each
# documented in its own module (tests/test_api_links.py checks both). The other names imported
# here stay importable, for the command line, the tests and code written against earlier versions.
__all__ = [
    "EXPERIMENTS", "estimate_time", "run_experiment", "stored_result",
    "BAND", "band_mask", "fourth_norm", "polysemantic_neurons", "polysemantic_neurons_by_mass",
    "polysemantic_neurons_by_response", "polysemantic_by_rule", "start_end_overlap", "winner_initial_rank", "winners",
    "init_weights", "loss_and_grad", "reconstruction_loss",
    "expected_colliding_pairs", "expected_polysemantic_exact", "predicted_polysemantic", "simulate_collisions",
    "TrainConfig", "device_report", "train",
]

from ._release import VERSION as __version__
