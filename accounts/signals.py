from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from accounts.services import member_logged_out


@receiver(user_logged_out)
def close_the_sessions_sockets(sender, request, user, **kwargs):
    if user is not None:
        member_logged_out(member=user, session_key=request.session.session_key)
