"""Beyond the toy model: other architectures, and incidental polysemanticity in sparse autoencoders.

Two experiments, both small enough for two CPU cores. Each is declared in its own file,
``polybook/experiments/architectures.py`` and ``polybook/experiments/sae.py`` (models, training
loop, config, run, replay and table rows); the chapter uses them through this module.

**Architectures** (:class:`polybook.experiments.architectures.ArchConfig`, experiment ``architectures``). The collisions setting
(``n`` features, ``m`` neurons, basis inputs, AdamW, L1 ``l1`` on the code) with one change at a
time. A model maps an input ``x`` (a row, ``(n,)``) to

    code  c = x W (x W U for ``second_layer``),       hidden  h = act_h(c),
    output y = act_o(h D^T + b),

with ``D = W`` (tied; ``D = W U`` for ``second_layer``) or a separate decoder ``D`` (``untied``),
``act_h`` the identity or a ReLU, ``act_o`` a ReLU or a GELU and ``b`` an output bias (zero unless
``biases``; a hidden bias would fold into it, since ``(c + b_h) D^T = c D^T + D b_h``). The loss is
the summed squared error over the ``n`` basis inputs plus ``l1`` times the L1 norm of their codes,
``l1 * sum_ik |c_ik|`` (for the tied model this is the paper's ``l1 * sum |W_ik|``); the untied model
pays ``l1/2`` on its encoder and ``l1/2`` on its decoder, which is the paper's penalty whenever
``D = W`` (an L1 on the encoder alone would let the encoder shrink and the decoder grow without end). ``minibatch``
trains on ``batch`` basis inputs drawn at random per step, the error scaled by ``n / batch`` so the
expected loss is the full one. ``VARIANTS`` lists them; every variant starts from the same
``W`` (the untied decoder from a second draw, ``U`` at the identity), so comparisons are paired.

Polysemantic neurons are counted with the book's band rule on the hidden activation of each basis
input, ``h_i = act_h(c_i)`` (``(instances, n, m)``): for the tied linear model this is ``W`` itself.
A variant counts only once it has *finished* by the book's rule (``FINISHED``: a mean share of
one-hot hidden codes of at least 0.95, one activation above ``ONE_HOT_TOL`` = 0.1); the stored run
trains each variant in rounds of ``steps`` until it has, up to ``max_steps``
(``train_until_finished`` in that module), and reports the rest as unfinished.

**Sparse autoencoders** (:class:`polybook.experiments.sae.SAEConfig`, experiment ``sae``). Ground truth: ``features`` unit
directions (the dictionary, ``(features, d)``); a sample is ``x = s @ dictionary`` with sparse
nonnegative coefficients ``s`` (each feature active with probability ``p``, then uniform on
``(0, 1]``). An SAE of width ``w`` encodes ``f = ReLU(W_e (x - b_d) + b_e)`` and decodes
``x_hat = W_d f + b_d`` with unit-norm decoder columns; its loss is the mean over a minibatch of
``||x - x_hat||^2 + sae_l1 * ||f||_1``, trained with Adam.

**The SAE response rule** (:func:`polybook.experiments.sae.sae_responses`): latent ``a`` *responds* to feature ``f`` when its
activation on the dictionary vector of ``f`` alone is at least ``rel`` (1/2) of its largest
activation over all features and at least ``floor`` (0.1) in absolute terms. A latent responding to
two or more features is *mixed* (polysemantic). A mixed latent is *recurring* when an SAE of another
seed mixes one of its feature pairs too (the data decided it), *accidental* otherwise
(:func:`polybook.experiments.sae.classify_mixed`). An SAE has *recovered* the features, its finish
rule, when at least ``RECOVERED`` (90%) of them have a decoder column with cosine at least
``RECOVERY_COS`` (0.9) (:func:`polybook.experiments.sae.recovery`).
"""

from __future__ import annotations

from .experiments.architectures import (
    FINISHED,
    ONE_HOT_TOL,
    VARIANTS,
    ArchConfig,
    arch_loss,
    arch_rows,
    hidden_codes,
    init_params,
    replay_architectures,
    train_until_finished,
    run_architectures,
    train_variant,
)
from .experiments.sae import (
    RECOVERED,
    RECOVERY_COS,
    SAEConfig,
    classify_mixed,
    encode,
    make_dictionary,
    mixed_latents,
    mixed_pairs,
    pair_overlap,
    pair_overlap_per_sae,
    recovery,
    replay_sae,
    run_sae,
    sae_responses,
    sae_rows,
    sample_data,
    train_sae,
)

__all__ = []
