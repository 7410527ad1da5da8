from django.utils.functional import SimpleLazyObject

from calls import fragments, services


def call_slot(request):
    """The member's call as the slot at the top of every page shows it, read only if shown."""
    if not request.user.is_authenticated:
        return {}
    return {
        "call_slot": SimpleLazyObject(
            lambda: fragments.slot_context(
                call=services.call_live_for(request.user), viewer=request.user
            )
        )
    }
