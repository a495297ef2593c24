"""Traces: OpenTelemetry spans from a job's submission to each item's write, off unless asked.

Every process calls ``configure(role)`` once (the CLI's root command does). It reads
the standard ``OTEL_*`` environment: when it asks for export (an OTLP endpoint, or
``OTEL_TRACES_EXPORTER=otlp`` or ``console``) and the SDK is installed (the ``otel``
extra), spans go through a batching processor to that exporter, and are flushed when
the process exits (a worker draining on SIGTERM included). Otherwise nothing is
installed: the API's tracer is a no-op, a span costs a function call, and no task
message carries a trace.

A job's trace crosses processes in its task messages: ``current_traceparent`` is
the W3C ``traceparent`` the enqueuer writes into each task, ``parent_context`` turns
it back into the parent of the worker's spans (garbage reads as "no parent").
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)
_NAME = "gpufleet"
_TRACEPARENT = "traceparent"
_EXPORTERS = ("otlp", "console")
_propagator = TraceContextTextMapPropagator()
_provider: trace.TracerProvider | None = None  # set by configure or use; else the global one


def configure(role: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Export this process's spans if the OTEL_* environment asks; True if it now does."""
    env = os.environ if environ is None else environ
    exporters = _exporters_asked(env)
    if not exporters:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("traces are asked for (OTEL_*) but the OpenTelemetry SDK is not "
                    "installed: pip install 'gpufleet[otel]'")
        return False
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; what is passed
    # here wins, so the role is the default name only.
    attributes: dict[str, str] = {"gpufleet.role": role}
    if not env.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = f"gpufleet-{role}"
    # shutdown_on_exit (the default): an atexit hook flushes what the batches still hold.
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in exporters:
        exporter = _exporter(name, env)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    use(provider)
    trace.set_tracer_provider(provider)  # for libraries that trace through the global one
    return True


def _exporters_asked(env: Mapping[str, str]) -> list[str]:
    """The exporters the standard variables ask for: none when the SDK is disabled."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    said = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")
            if e.strip()]
    if not said:  # unset: an endpoint is the ask
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    if "none" in said:
        return []
    unknown = [e for e in said if e not in _EXPORTERS]
    if unknown:
        log.warning("OTEL_TRACES_EXPORTER: %s not supported (only %s): ignored",
                    ", ".join(unknown), " and ".join(_EXPORTERS))
    return [e for e in dict.fromkeys(said) if e in _EXPORTERS]


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    if name == "console":  # stderr: stdout is a command's output (--json)
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        return ConsoleSpanExporter(out=sys.stderr)
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
            return GrpcExporter()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        package = ("opentelemetry-exporter-otlp-proto-grpc" if protocol == "grpc"
                   else "'gpufleet[otel]'")
        log.warning("traces: the OTLP %s exporter is not installed: pip install %s",
                    protocol, package)
        return None
    return OTLPSpanExporter()  # endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_*


def use(provider: trace.TracerProvider | None) -> None:
    """Send gpufleet's spans to this provider (None: back to the global one). configure
    calls it; so can a program that embeds gpufleet, or a test with an in-memory exporter."""
    global _provider
    _provider = provider


def enabled() -> bool:
    """Whether spans go anywhere: components that trace at a cost (the worker's span
    observer) are only built when they do."""
    if _provider is not None:
        return True
    return not isinstance(trace.get_tracer_provider(),
                          trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def tracer() -> trace.Tracer:
    """gpufleet's tracer: a no-op one unless configure, use or the embedding program set one."""
    if _provider is not None:
        return _provider.get_tracer(_NAME)
    return trace.get_tracer(_NAME)


def current_traceparent() -> str | None:
    """The current span as a W3C traceparent, for a task message; None without one."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(_TRACEPARENT)


def parent_context(traceparent: str | None) -> Context | None:
    """The context a message's traceparent names, to parent spans on; None when it names
    none (absent, or unreadable: a bad trace never fails a task, it starts a new trace)."""
    if not traceparent:
        return None
    context = _propagator.extract({_TRACEPARENT: traceparent})
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context
