"""Which model does a task, with which max_tokens and temperature, and what falls back.

Precedence, field by field: environment variable > scope allocation > global allocation >
built-in default. The caller names the task type by its string and the scope (a spread) as
any object with `pk`, `slug` and `max_tokens`; the task types themselves, with their
environment word and built-in default, come from settings.LLM_TASK_TYPES
(allocation/task_types.py), so this layer holds no list of the domain's tasks.

An admin edit applies to the next reading without a restart: the rows are read at most every
FRESH_S per process, and afresh at once in the process that saves one
(allocation/staff_config.py). Each allocation is logged, with the layer each value came from,
when a process first resolves it and whenever it changes: not again for every estimate and
reading that resolves it unchanged (a burst of readings wrote four identical lines each).
"""

import logging
from dataclasses import dataclass, field
from decimal import Decimal

from allocation.models import ModelAllocation
from allocation.pricing import price_problem
from allocation.staff_config import StaffTable
from allocation.task_types import task_type_of
from config import env

logger = logging.getLogger(__name__)


class AllocationError(Exception):
    """An allocation that cannot be used (e.g. an environment override nobody can price)."""


@dataclass(frozen=True)
class BuiltinDefault:
    model: str
    max_tokens: int
    temperature: float
    fallbacks: tuple[str, ...]


# Staff's allocation rows, by (task type, spread id or None): every new reading resolves them.
_allocations = StaffTable(
    ModelAllocation, lambda rows: {(row.task_type, row.spread_id): row for row in rows}
)


class Layer:
    ENVIRONMENT = "environment"
    SPREAD = "spread"
    GLOBAL = "global"
    DEFAULT = "default"


# Anthropic's overloads come in waves of seconds to minutes: a task waits out a minute of one.
DEFAULT_OVERLOAD_PATIENCE_S = 60


@dataclass(frozen=True)
class AllocationConfig:
    task_type: str
    model: str
    max_tokens: int
    temperature: float
    fallbacks: tuple[str, ...]
    cache_ttl: str = ""  # "" : the spread's reading cache TTL
    # A fallback may cost at most this multiple of the model's cost for the same call (None:
    # no ceiling). See allocation/failover_cost.py.
    fallback_cost_ceiling: Decimal | None = None
    # Seconds a task keeps trying while the provider is overloaded (allocation/calls.py).
    overload_patience_s: float = DEFAULT_OVERLOAD_PATIENCE_S
    # field name -> the layer it came from, e.g. {"model": "environment", "max_tokens": "spread"}
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def models(self) -> list[str]:
        """The model, then its fallbacks, each once."""
        return list(dict.fromkeys([self.model, *self.fallbacks]))


def env_name(spread_slug: str, task_type: str, suffix: str) -> str:
    """CELTIC_CROSS_CARD_MODEL, CELTIC_CROSS_OVERALL_MAX_TOKENS, ..."""
    return f"{spread_slug.upper()}_{task_type_of(task_type).kind.upper()}_{suffix}"


def rows_in_order(rows: dict) -> list[ModelAllocation]:
    return [rows[layer] for layer in (Layer.SPREAD, Layer.GLOBAL) if layer in rows]


class Allocator:
    def __init__(self):
        # (task type, scope id) -> what was last logged for it, sources included
        self._logged: dict[tuple, tuple] = {}

    def get_config(self, task_type: str, spread=None) -> AllocationConfig:
        task_type = task_type_of(task_type)
        allocations = _allocations.get()
        scope_id = spread.pk if spread is not None else None
        rows = {}
        if (row := allocations.get((task_type.value, None))) is not None:
            rows[Layer.GLOBAL] = row
        if scope_id is not None and (row := allocations.get((task_type.value, scope_id))):
            rows[Layer.SPREAD] = row
        default = task_type.builtin_default
        layers = [
            (Layer.SPREAD, rows.get(Layer.SPREAD)),
            (Layer.GLOBAL, rows.get(Layer.GLOBAL)),
            (Layer.DEFAULT, default),
        ]
        env = self._environment(task_type, spread)
        values, sources = {}, {}
        for name in ("model", "max_tokens", "temperature", "fallbacks"):
            if name in env:
                values[name], sources[name] = env[name], Layer.ENVIRONMENT
                continue
            for layer, source in layers:
                if source is not None:
                    values[name] = (
                        tuple(source.fallbacks) if name == "fallbacks" else getattr(source, name)
                    )
                    sources[name] = layer
                    break
        # Blank on a row means "no opinion": the next layer, then the spread decides.
        values["cache_ttl"] = next(
            (row.cache_ttl for row in rows_in_order(rows) if row.cache_ttl), ""
        )
        values["overload_patience_s"] = next(
            (
                row.overload_patience_s
                for row in rows_in_order(rows)
                if row.overload_patience_s is not None
            ),
            DEFAULT_OVERLOAD_PATIENCE_S,
        )
        if "fallback_cost_ceiling" in env:
            values["fallback_cost_ceiling"] = env["fallback_cost_ceiling"]
            sources["fallback_cost_ceiling"] = Layer.ENVIRONMENT
        else:
            ceilings = [
                (layer, rows[layer].fallback_cost_ceiling)
                for layer in (Layer.SPREAD, Layer.GLOBAL)
                if layer in rows and rows[layer].fallback_cost_ceiling is not None
            ]
            layer, ceiling = ceilings[0] if ceilings else (Layer.DEFAULT, None)
            values["fallback_cost_ceiling"], sources["fallback_cost_ceiling"] = ceiling, layer
        if spread is not None and spread.max_tokens:
            values["max_tokens"] = min(values["max_tokens"], spread.max_tokens)
        config = AllocationConfig(task_type=task_type.value, sources=sources, **values)
        resolved = (config, tuple(sorted(sources.items())))
        if self._logged.get((task_type.value, scope_id)) != resolved:
            self._logged[(task_type.value, scope_id)] = resolved
            self._log(config, spread)
        return config

    def _log(self, config: AllocationConfig, spread) -> None:
        sources = config.sources
        logger.info(
            "allocation spread=%s task=%s model=%s (%s) max_tokens=%s (%s) temperature=%s (%s) "
            "fallbacks=%s (%s) fallback_cost_ceiling=%s (%s)",
            getattr(spread, "slug", "-"),
            config.task_type,
            config.model,
            sources["model"],
            config.max_tokens,
            sources["max_tokens"],
            config.temperature,
            sources["temperature"],
            ",".join(config.fallbacks) or "-",
            sources["fallbacks"],
            config.fallback_cost_ceiling or "-",
            sources["fallback_cost_ceiling"],
        )

    def max_concurrent_calls(self, spread) -> int:
        name = f"{spread.slug.upper()}_MAX_CONCURRENT_CALLS"
        found = env.override_int(name, error=AllocationError)
        return spread.max_concurrent_calls if found is None else found

    def _environment(self, task_type, spread) -> dict:
        """The overrides set for this spread and task (config/env.py declares their names)."""
        if spread is None:
            return {}

        def name(suffix: str) -> str:
            return env_name(spread.slug, task_type, suffix)

        read = {
            "model": env.override_str(name("MODEL")),
            "max_tokens": env.override_int(name("MAX_TOKENS"), error=AllocationError),
            "temperature": env.override_float(name("TEMPERATURE"), 0, 1, error=AllocationError),
            "fallbacks": env.override_list(name("FALLBACK_MODELS")),
            "fallback_cost_ceiling": env.override_decimal(
                name("FALLBACK_COST_CEILING"), error=AllocationError
            ),
        }
        found = {key: value for key, value in read.items() if value is not None}
        if "fallbacks" in found:
            found["fallbacks"] = tuple(found["fallbacks"])
        for model_id in [found.get("model"), *found.get("fallbacks", ())]:
            if model_id and (problem := price_problem(model_id)):
                raise AllocationError(f"Environment override for {spread.slug}: {problem}")
        return found


_allocator = Allocator()


def get_allocator() -> Allocator:
    return _allocator
