"""Content-Security-Policy violations, caught in every browser context a test opens.

A listener for `securitypolicyviolation` is installed in every document of a context with an
init script, and hands each violation to Python through an exposed binding. Both go through
the DevTools protocol (Page.addScriptToEvaluateOnNewDocument, Runtime.addBinding), which the
page's own CSP does not govern: `e2e/test_csp.py` shows the listener runs, and reports, under
Parley's strict policy.
"""

from contextlib import suppress
from dataclasses import dataclass, field

from playwright.sync_api import Error

BINDING = "__parleyCspViolation"

LISTENER = f"""
window.addEventListener("securitypolicyviolation", (event) => {{
  window.{BINDING}({{
    documentURI: event.documentURI,
    effectiveDirective: event.effectiveDirective,
    blockedURI: event.blockedURI,
    sourceFile: event.sourceFile,
    lineNumber: event.lineNumber,
    sample: event.sample,
    disposition: event.disposition,
  }});
}}, true);
"""

# A task queued after any violation event already queued: once it ran, and its answer came
# back, the bindings those events called have reached Python.
SETTLE = "() => new Promise((resolve) => setTimeout(resolve, 0))"


@dataclass
class CspWatch:
    """The violations of every context given to `watch`, for one test."""

    violations: list[dict] = field(default_factory=list)
    contexts: list = field(default_factory=list)

    def watch(self, context) -> None:
        context.expose_binding(BINDING, lambda source, report: self.violations.append(report))
        context.add_init_script(LISTENER)
        self.contexts.append(context)

    def settle(self) -> None:
        for context in self.contexts:
            for page in list(context.pages):
                # Closed, crashed or navigating away: it has nothing more to say.
                with suppress(Error):
                    page.evaluate(SETTLE)

    def take(self) -> list[dict]:
        """The violations so far, forgotten once taken (for a test that makes them)."""
        self.settle()
        taken, self.violations[:] = list(self.violations), []
        return taken

    def report(self) -> str:
        return "\n".join(
            f"- {v['effectiveDirective']} refused {v['blockedURI'] or '(inline)'} on "
            f"{v['documentURI']} ({v['sourceFile'] or '?'}:{v['lineNumber']}) "
            f"sample={v['sample']!r}"
            for v in self.violations
        )
