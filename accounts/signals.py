from allauth.account.signals import password_changed, password_reset, password_set
from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts.services import member_credentials_changed, member_logged_out


@receiver(user_logged_out)
def close_the_sessions_sockets(sender, request, user, **kwargs):
    if user is not None:
        member_logged_out(member=user, session_key=request.session.session_key)


# Sockets outlive the credentials they were opened with unless told. Passwords change through
# allauth's views only (the admin's password form is the exception: it sends no signal), and
# allauth's signals carry the request, which names the session that made the change and stays
# signed in. A post_save could not tell that session from the others: it fires before allauth
# moves that session to the new hash, so its sockets would close too.
@receiver(password_changed)
@receiver(password_set)
def close_the_other_sessions_sockets(sender, request, user, **kwargs):
    still_in = request.user.is_authenticated and request.user.pk == user.pk
    old_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    kept = (old_key, request.session.session_key) if still_in else None
    member_credentials_changed(member=user, kept_session=kept)


@receiver(password_reset)
def close_every_sessions_sockets(sender, request, user, **kwargs):
    member_credentials_changed(member=user)


# Deactivation happens in the admin or the shell, with no signal of its own.
@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def close_an_inactive_members_sockets(sender, instance, created, update_fields, **kwargs):
    if created or instance.is_active:
        return
    if update_fields is None or "is_active" in update_fields:
        member_credentials_changed(member=instance)
