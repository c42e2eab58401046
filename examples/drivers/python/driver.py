"""`python-file`: a single-node tsohost driver written in Python.

The same logic as tsohost's built-in `file` driver, built with
componentize-py against `wit/driver.wit` (world `consensus-driver`). Replace
what follows with your own driver: the contract is in the comments of
wit/driver.wit, and `tsohost check-driver` tells you which rule a change
breaks.

All durable state lives in host storage, as 8-byte big-endian u64 values:
- `high-water`: the durable high water; never decreases;
- `generation`: bumped (synced) by every `init`, so every instance leads
  under an epoch `{hi: generation, lo: 0}` strictly greater than the last.

The only state kept in guest memory is this instance's config, epoch and
statistics, re-derived (or restarted from 0) by `init` on every fresh
instance.
"""

from typing import List, Optional

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Config,
    DriverError,
    DriverError_Fenced,
    DriverError_Internal,
    DriverError_InvalidConfig,
    DriverError_OutOfRange,
    DriverError_Storage,
    DriverInfo,
    Epoch,
    Leadership,
    LogLevel,
    Metric,
    MetricValue_Counter,
    Peer,
    Role,
)

NAME = "python-file"  # storage namespace: 1-64 of [a-z0-9_-]
VERSION = "0.1.0"

HIGH_WATER = b"high-water"
GENERATION = b"generation"

U64_MAX = (1 << 64) - 1
MAX_PHYSICAL_MS = (1 << 46) - 1  # largest physical ms a timestamp carries

# Per-instance state, set by `init`. A fresh instance starts with None.
_node_id: Optional[int] = None
_epoch: Optional[Epoch] = None
_floor: int = 0
_high_water_writes = 0  # a counter: reset with the instance


class DriverFailure(Exception):
    """Carries a DriverError out of the helpers below."""

    def __init__(self, error: DriverError):
        super().__init__(error)
        self.error = error


def _get_u64(key: bytes) -> Optional[int]:
    raw = host.storage_get(key)
    if raw is None:
        return None
    if len(raw) != 8:
        raise DriverFailure(
            DriverError_Storage(
                f"key {key.decode(errors='replace')!r} holds {len(raw)} bytes, "
                "expected an 8-byte u64: storage is corrupt"
            )
        )
    return int.from_bytes(raw, "big")


def _put_u64_synced(key: bytes, value: int) -> None:
    try:
        host.storage_write([(key, value.to_bytes(8, "big"))], [], True)
    except Err as e:  # storage-write's result<_, driver-error>
        raise DriverFailure(e.value)


def _epoch_key(e: Epoch):
    return (e.hi, e.lo)


def _load() -> int:
    return max(_get_u64(HIGH_WATER) or 0, _floor)


def _persist(at_least: int, epoch: Epoch) -> int:
    if at_least > MAX_PHYSICAL_MS:
        raise DriverFailure(DriverError_OutOfRange(at_least))
    assert _epoch is not None
    if _epoch_key(epoch) < _epoch_key(_epoch):
        raise DriverFailure(DriverError_Fenced(Epoch(hi=_epoch.hi, lo=_epoch.lo)))
    if _epoch_key(epoch) > _epoch_key(_epoch):
        raise DriverFailure(
            DriverError_Internal(
                f"persist carries epoch {epoch.hi}.{epoch.lo}, newer than this "
                f"driver's {_epoch.hi}.{_epoch.lo}: only this node issues epochs "
                "for its storage"
            )
        )
    global _high_water_writes
    current = _load()
    if at_least <= current:
        return current
    _put_u64_synced(HIGH_WATER, at_least)
    _high_water_writes += 1
    return at_least


def _complete(request: int, fn) -> None:
    """Run `fn` and complete `request` exactly once with its outcome."""
    try:
        if _epoch is None:
            raise DriverFailure(DriverError_Internal("called before init"))
        outcome = Ok(fn())
    except DriverFailure as f:
        outcome = Err(f.error)
    except Exception as e:  # never leave a request incomplete
        outcome = Err(DriverError_Internal(f"{type(e).__name__}: {e}"))
    host.completed(request, outcome)


def _refuse_cluster_operation(request: int, operation: str) -> None:
    host.completed(
        request,
        Err(
            DriverError_InvalidConfig(
                f"{operation}: this is a single-node driver; use a replicated "
                "driver (raft)"
            )
        ),
    )


class Driver(exports.Driver):
    def info(self) -> DriverInfo:
        return DriverInfo(name=NAME, version=VERSION)

    def init(self, cfg: Config) -> None:
        global _node_id, _epoch, _floor
        if cfg.options:
            key = cfg.options[0][0]
            raise Err(
                DriverError_InvalidConfig(
                    f"unknown driver option `{key}`; this driver knows none"
                )
            )
        for p in cfg.peers:
            if p.id != cfg.node_id:
                raise Err(
                    DriverError_InvalidConfig(
                        f"peers: this is a single-node driver, but node {p.id} "
                        f"({p.address}) is configured; use a replicated driver "
                        "(raft, paxos) for a cluster"
                    )
                )
        try:
            generation = (_get_u64(GENERATION) or 0) + 1
            if generation > U64_MAX:
                raise DriverFailure(DriverError_Internal("generation overflow"))
            _put_u64_synced(GENERATION, generation)  # durable before leading
        except DriverFailure as f:
            raise Err(f.error)
        _node_id = cfg.node_id
        _floor = cfg.floor
        _epoch = Epoch(hi=generation, lo=0)
        host.report_leadership(
            Leadership(
                role=Role.LEADER,
                leader=cfg.node_id,
                epoch=Epoch(hi=generation, lo=0),
                lease_until_ms=U64_MAX,
            )
        )

    def on_message(self, from_: int, payload: bytes) -> None:
        host.log(
            LogLevel.WARN,
            f"ignored {len(payload)} bytes from node {from_}: the python-file "
            "driver has no peers",
        )

    def on_tick(self, now_ms: int) -> int:
        return U64_MAX

    def load_high_water(self, request: int) -> None:
        _complete(request, _load)

    def persist_high_water(self, request: int, at_least: int, epoch: Epoch) -> None:
        _complete(request, lambda: _persist(at_least, epoch))

    def change_membership(self, request: int, members: List[Peer]) -> None:
        _refuse_cluster_operation(request, "change-membership")

    def transfer_leadership(self, request: int, to: Optional[int]) -> None:
        _refuse_cluster_operation(request, "transfer-leadership")

    def stats(self) -> List[Metric]:
        """Published on the node's /metrics as tsohost_driver_<name>{driver=...}
        (a counter with `_total` appended). An empty list is a valid answer."""
        return [
            Metric(
                name="high_water_writes",
                help="synced writes of the high water by this instance",
                value=MetricValue_Counter(_high_water_writes),
                labels=[],
            )
        ]
