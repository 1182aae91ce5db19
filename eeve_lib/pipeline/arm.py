"""Chapter 05's ablation arms as one type: the kinds of arm, the arms a profile asks for, one parser.

An arm's name (``seven_stages``, ``init:random``, ``lr:2``) keys ``metrics.json`` and names the
arm's folder, so an :class:`Arm` *is* that string, parsed once into its ``kind`` and ``value`` and
checked against :data:`ARM_KINDS`. How each kind trains lives in
:data:`eeve_lib.pipeline.training.ARM_TRAINERS`, one function per kind.

A new kind of arm is one entry in :data:`ARM_KINDS` (with the profile setting that lists its arms,
or none: ``ablations.extra_arms`` names any arm) and one trainer in ``training.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import EeveError

if TYPE_CHECKING:  # the profile's type only: profiles.py imports this module
    from .profiles import Profile


class ArmError(EeveError):
    """An ablation arm's name that no kind of arm accepts."""


@dataclass(frozen=True)
class ArmKind:
    """One kind of arm: what it trains, the values it takes, the profile setting listing its arms."""

    description: str
    value: str = ""  # what follows "kind:" in a name, "" for an arm without a value
    number_range: tuple[float, float] | None = None  # a numeric value's closed range
    values: Callable[[Profile], list[str]] = lambda profile: []  # the profile's arms of this kind
    tuning: bool = False  # trained to choose a setting on the tuning split, never compared on the reported one


def _replay_values(profile: Profile) -> list[str]:
    return [f"{r:g}" for r in profile.ablations.english_replay if r != profile.training.english_replay]


def _baseline_lr_values(profile: Profile) -> list[str]:
    # the baseline's grid is the schedule's multiples and 1; its own multiple is the arm baseline:no_expansion
    a = profile.ablations
    if not a.learning_rate_scales:
        return []
    return [f"{x:g}" for x in sorted({1.0, *a.learning_rate_scales} - {a.baseline_lr_scale})]


ARM_KINDS: dict[str, ArmKind] = {
    "seven_stages": ArmKind("the profile's own schedule and settings (at the profile's seed, the run itself)",
                            values=lambda p: [""]),
    "schedule": ArmKind("another schedule for the same tokens", "a schedule name",
                        values=lambda p: list(p.ablations.schedules)),
    "init": ArmKind("the seven stages from another initialisation", "an init method",
                    values=lambda p: list(p.ablations.inits)),
    "stage6": ArmKind("the seven stages with stage 6 trained through adapters", "lora or qlora",
                      values=lambda p: list(p.ablations.stage6)),
    "baseline": ArmKind("the base tokenizer, every parameter trained", "no_expansion or equal_text",
                        values=lambda p: list(p.ablations.baselines)),
    "replay": ArmKind("the seven stages with another English-replay share", "a share", (0.0, 0.9),
                      values=_replay_values),
    "tied": ArmKind("the seven stages on a tied base kept tied", "seven_stages",
                    values=lambda p: ["seven_stages"] if p.ablations.tied else []),
    "lr": ArmKind("the seven stages with every learning rate times the multiple", "a multiple", (1e-9, 10.0),
                  values=lambda p: [f"{x:g}" for x in p.ablations.learning_rate_scales], tuning=True),
    "baseline_lr": ArmKind("the no-expansion baseline with its learning rate times the multiple", "a multiple",
                           (1e-9, 10.0), values=_baseline_lr_values, tuning=True),
}


class Arm(str):
    """An arm's name, parsed: ``Arm("lr:2").kind == "lr"``, ``.value == "2"``, ``.number == 2.0``.

    A string, so that it keys ``metrics.json`` and compares equal to its name; a name no kind
    accepts is an :class:`ArmError` naming the kinds.
    """

    kind: str
    value: str

    def __new__(cls, name: str) -> Arm:
        if isinstance(name, Arm):
            return name
        kind, colon, value = str(name).partition(":")
        spec = ARM_KINDS.get(kind)
        if spec is None or bool(colon) != bool(spec.value) or (colon and not value):
            known = ", ".join(k + (f":<{s.value}>" if s.value else "") for k, s in ARM_KINDS.items())
            raise ArmError(f"Unknown ablation arm {name!r}: use {known}.")
        arm = super().__new__(cls, name)
        arm.kind, arm.value = kind, value
        if spec.number_range is not None:
            lo, hi = spec.number_range
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if not lo <= number <= hi:
                raise ArmError(f"Ablation arm {name!r}: {spec.value} must be a number in [{lo:g}, {hi:g}], "
                               f"e.g. {kind}:{hi / 2:g}.")
        return arm

    @property
    def spec(self) -> ArmKind:
        return ARM_KINDS[self.kind]

    @property
    def number(self) -> float:
        """The numeric value (a replay share, a learning-rate multiple)."""
        return float(self.value)

    @property
    def is_tuning(self) -> bool:
        return self.spec.tuning

    @property
    def folder(self) -> str:
        """The arm's folder under ``ablations/``: the name with its colon as a hyphen."""
        return self.replace(":", "-", 1)

    @classmethod
    def from_folder(cls, folder: str) -> Arm:
        return cls(folder if folder in ARM_KINDS else folder.replace("-", ":", 1))


MAIN_ARM = Arm("seven_stages")
TIED_ARM = Arm("tied:seven_stages")
EQUAL_TEXT = Arm("baseline:equal_text")  # the baseline that trains the most steps


def ablation_arms(profile: Profile) -> list[Arm]:
    """The arms chapter 05 trains, the seven stages first, in :data:`ARM_KINDS`' order, then
    ``ablations.extra_arms`` (empty when ablations are off)."""
    if not profile.ablations.enabled:
        return []
    arms = [Arm(f"{kind}:{value}" if value else kind) for kind, spec in ARM_KINDS.items()
            for value in spec.values(profile)]
    return arms + [a for a in map(Arm, profile.ablations.extra_arms) if a not in arms]


def learning_rate_arms(profile: Profile) -> list[Arm]:
    """The arms that choose a setting on the tuning split (the learning-rate grid); trained at the
    profile's seed only."""
    return [a for a in ablation_arms(profile) if a.is_tuning]


__all__ = ["Arm", "ArmError", "ArmKind", "ARM_KINDS", "MAIN_ARM", "TIED_ARM", "EQUAL_TEXT", "ablation_arms",
           "learning_rate_arms"]
