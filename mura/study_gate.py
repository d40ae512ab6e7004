"""The study-level half of the promotion gate: which figure of the overall study kappa is held against the floor.

The point estimate on a few hundred test studies can clear a floor by noise alone; holding the lower bound of its
95 % interval against the floor instead asks that the model clear it on nearly every resample of the studies.
"""

from __future__ import annotations

from dataclasses import dataclass

from mura.study_metrics import StudyMetrics

POINT, LOWER_BOUND = "point", "lower bound"
_FIGURES = {POINT: "point estimate", LOWER_BOUND: "lower bound of its 95 % interval"}
_DESCRIBED = {POINT: "overall study kappa", LOWER_BOUND: "lower bound of the 95 % interval of the overall study kappa"}


@dataclass(frozen=True)
class GateDecision:
    blessed: bool
    figure: str  # POINT or LOWER_BOUND
    kappa: float  # that figure's value
    floor: float

    @property
    def figure_text(self) -> str:
        """Which figure of the overall kappa, for a reader: "point estimate", "lower bound of its 95 % interval"."""
        return _FIGURES[self.figure]

    def reason(self) -> str:
        """Why, in one clause: "overall study kappa 0.412 > floor 0.3", "... 0.201 is not above the floor 0.3"."""
        described = f"{_DESCRIBED[self.figure]} {self.kappa:.3f}"
        if self.blessed:
            return f"{described} > floor {self.floor}"
        return f"{described} is not above the floor {self.floor}"

    def to_report(self) -> dict[str, object]:
        """The fields study_metrics.json holds for the gate."""
        return {
            "blessed": self.blessed,
            "gate_figure": self.figure,
            "gate_kappa": self.kappa,
            "kappa_floor": self.floor,
        }

    @classmethod
    def from_report(cls, report: dict) -> GateDecision:
        """Read back from study_metrics.json. Reports written before the gate could use the lower bound held the
        point against the floor, and say only that."""
        return cls(
            blessed=report["blessed"],
            figure=report.get("gate_figure", POINT),
            kappa=report.get("gate_kappa", report["rows"][-1]["kappa"]),  # the overall row comes last
            floor=report["kappa_floor"],
        )


def decide(table: list[StudyMetrics], floor: float, on_lower_bound: bool) -> GateDecision:
    """Blessed when the chosen figure of the table's overall kappa is strictly above `floor` (so a constant model,
    kappa 0, never passes the default floor 0)."""
    overall = next((row for row in table if row.group == "overall"), None)
    if overall is None:
        raise ValueError("the study table has no overall row to gate on")
    if on_lower_bound and overall.kappa_low is None:
        raise ValueError("the gate is to use the lower bound of the overall kappa's interval, but the table has none")
    figure, kappa = (LOWER_BOUND, overall.kappa_low) if on_lower_bound else (POINT, overall.kappa)
    return GateDecision(blessed=kappa > floor, figure=figure, kappa=kappa, floor=floor)
