"""Warnings no fit should pass silently: a scale the map cannot match, anchors that do not
determine it, a map no better than chance. Each names the fix.

The numbers come from the statistics (`math.diagnostics`) and, for the chance check, from the
quality report's shuffled-pair control; they are kept in the transform's ``fit.diagnostics``
and the warnings in its ``warnings`` (which the CLI prints as ``warning: ...`` lines) and in
the report's ``warnings``.
"""
from __future__ import annotations

from ..math.diagnostics import NORM_RATIO_LIMIT, cross_rank, norm_summary, scale_mismatch
from ..math.methods import ORTHOGONAL
from ..math.stats import AlignmentStats
from ..transform import Transform

FEW_DIRECTIONS = 4            # undetermined directions tolerated without a warning ...
FEW_DIRECTIONS_SHARE = 0.02   # ... or this share of them, whichever is larger
CHANCE_MARGIN = 0.01          # held-out top-1 within this of the shuffled control is chance


def anchor_diagnostics(stats: AlignmentStats, centre: bool) -> dict:
    """Norms of both sides and the effective rank of the cross-product."""
    return {"norms": norm_summary(stats), "rank": cross_rank(stats, centre)}


def diagnostic_warnings(diagnostics: dict, transform: Transform, anchors: int) -> list[str]:
    """Scale trap (orthogonal maps without --scale) and undetermined directions."""
    warnings = []
    norms, rank = diagnostics["norms"], diagnostics["rank"]
    if transform.method == ORTHOGONAL and not transform.options.scale and \
            scale_mismatch(norms, transform.options.centre):
        centred = (f"; centred {norms['source_centred_rms']:.3g} vs {norms['target_centred_rms']:.3g}"
                   if transform.options.centre else "")
        warnings.append(f"source rows have RMS norm {norms['source_rms_norm']:.3g} and target rows "
                        f"{norms['target_rms_norm']:.3g} ({norms['ratio']:.1f}x{centred}): an orthogonal map "
                        f"keeps lengths, so with a difference above {NORM_RATIO_LIMIT:g}x mapped rows land far "
                        "from their targets; fit with --scale, --normalize or --method auto")
    missing = rank["directions"] - rank["effective_rank"]
    # with no more pairs than dimensions fit_and_save.fit_warnings has already said so
    enough = anchors > max(transform.d_source, transform.d_target)
    if enough and missing > max(FEW_DIRECTIONS, FEW_DIRECTIONS_SHARE * rank["directions"]):
        warnings.append(f"the anchors determine only {rank['effective_rank']} of {rank['directions']} directions "
                        f"(effective rank of the cross-product X^T Y): the map is arbitrary in the other {missing}; "
                        "use more varied anchors, or check that the pairs match")
    return warnings


def chance_warnings(heldout: dict | None) -> list[str]:
    """A map whose held-out top-1 is no better than the shuffled-pair control's."""
    if not heldout or "shuffled_control" not in heldout:
        return []
    got, chance = heldout["aligned"]["top1"], heldout["shuffled_control"]["top1"]
    if got > chance + CHANCE_MARGIN:
        return []
    return [f"held-out top-1 {got:.3f} is no better than the shuffled-pair control ({chance:.3f}): the map has "
            "learnt nothing usable; check the pairing, then fit with --scale, --normalize or --method auto"]
