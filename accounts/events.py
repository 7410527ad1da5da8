"""What accounts tells the features above it, without importing them (they import accounts).

`contact_ended` is sent with `a=` and `b=` (members) inside the transaction that ended their
contact, by a removal or a block: whatever the two shared as contacts ends with it (calls end).
"""

from django.dispatch import Signal

contact_ended = Signal()
