from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"
    verbose_name = "Calls"

    def ready(self) -> None:
        from accounts.events import contact_ended
        from calls import checks  # noqa: F401  (registers the call settings' system checks)
        from calls.services import calls_end_between

        def end_their_call(sender, a, b, **kwargs):
            calls_end_between(a=a, b=b)

        # Two who are no longer contacts are no longer in a call together, nor ringing.
        contact_ended.connect(end_their_call, dispatch_uid="calls.end_their_call", weak=False)
