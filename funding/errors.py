"""The one error tree of settlekeeper.

::

    SettlekeeperError
    ├── RetryableError            try again later; nothing is known to have gone wrong for good
    │   ├── TransportError        connection refused/reset, timeout, truncated body
    │   ├── RateLimitedError      HTTP 429 (carries the reset time when Alpaca sent one)
    │   ├── ServerError           HTTP 5xx
    │   └── RedisUnavailableError
    ├── PermanentError            retrying the same call cannot succeed; a person or a re-plan must act
    │   ├── ConfigError           a bad SETTLEKEEPER_* setting (named in the message)
    │   ├── ClientError           HTTP 4xx other than 429 (carries Alpaca's ``code``)
    │   │   ├── AuthenticationError        401 (or 403 to a read): the Broker API refused the credentials
    │   │   ├── IdempotencyConflictError   same Idempotency-Key, different body (422)
    │   │   └── NotFoundError     404, e.g. an unknown account or transfer
    │   └── MalformedDataError    a payload that does not parse (bad JSON, non-decimal amount, an id of
    │                             the wrong shape)
    └── Stop                      control flow, not a failure: the caller stops what it is doing
        ├── LeaseLostError        another listener holds the lease: stop writing at once
        ├── KillSwitchOn          an operator set the kill switch: no money call goes out
        ├── RunLockLost           a settle run's lock lapsed: stop before the next money call
        ├── Waiting               a journal or settlement is still in progress: a later run resumes it
        └── Rewind                the server dropped stream messages: reconnect from the cursor

The stand-ins use the tree too: the demo's ``DemoError`` is a :class:`PermanentError` and its ``Interrupted``
a :class:`Stop`. The sandbox's ``SandboxError`` stays outside it on purpose: it is the stand-in's answer to
a request, turned into an HTTP error response inside the sandbox and never raised into settlekeeper's code
(what reaches the Broker API client is a response, which the client maps onto this tree).

Retry code catches exactly :class:`RetryableError`; nothing retries a :class:`Stop`. Messages carry what a
person needs to act (the request, the account, the amount, Alpaca's code) and never a credential.

Outside the tree, ``ValueError`` and ``TypeError`` mean a programming error, never a condition of the
day: a naive datetime given to the calendar, the session of a day that is not a trading day, an alert
kind missing from ``funding.alerts.KINDS``, a non-finite amount given to the JSON encoder. Validators
of pydantic models and settings raise ``ValueError`` because pydantic asks them to; it reaches callers
as :class:`MalformedDataError` (the Broker API client) or :class:`ConfigError` (the settings loader).
"""

from __future__ import annotations


class SettlekeeperError(Exception):
    """Root of every error settlekeeper raises on purpose."""


class RetryableError(SettlekeeperError):
    """A transient failure: the same operation may succeed later."""


class TransportError(RetryableError):
    """The request did not get a complete HTTP answer (connect, reset, timeout)."""


class ServerError(RetryableError):
    """The server answered 5xx."""

    def __init__(self, message: str, *, status: int, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RateLimitedError(RetryableError):
    """The server answered 429; ``reset_at`` is the unix time the window resets, when known."""

    def __init__(self, message: str, *, reset_at: float | None = None) -> None:
        super().__init__(message)
        self.reset_at = reset_at


class RedisUnavailableError(RetryableError):
    """Redis did not answer."""


class PermanentError(SettlekeeperError):
    """Retrying the same call cannot succeed."""


class ConfigError(PermanentError):
    """A setting is missing or invalid; the message names the ``SETTLEKEEPER_*`` variable."""


class ClientError(PermanentError):
    """The server refused the request with a 4xx other than 429."""

    def __init__(self, message: str, *, status: int, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


CREDENTIALS_HINT = "check SETTLEKEEPER_BROKER_KEY and SETTLEKEEPER_BROKER_SECRET (and SETTLEKEEPER_BROKER_URL)"


class AuthenticationError(ClientError):
    """401, or 403 to a read or a stream: the Broker API refused the key and secret; nothing succeeds until
    they are fixed. (A 403 to a POST is a business refusal, a plain :class:`ClientError`.)"""

    def __init__(self, where: str, *, status: int, code: int | None = None, message: str = "") -> None:
        said = f" ({message})" if message else ""
        super().__init__(
            f"{where} → HTTP {status}{said}: the Broker API refused the credentials; {CREDENTIALS_HINT}",
            status=status,
            code=code,
        )


class NotFoundError(ClientError):
    """404: the named account, transfer, journal or settlement does not exist."""


class IdempotencyConflictError(ClientError):
    """422: the Idempotency-Key was used before with a different body."""


class MalformedDataError(PermanentError):
    """A payload could not be parsed into the model it claims to be."""


class Stop(SettlekeeperError):
    """Control flow, not a failure: whoever catches it stops what it is doing, as the subclass says."""


class LeaseLostError(Stop):
    """The caller's lease token no longer owns the leader key; it must stop writing at once."""


class KillSwitchOn(Stop):
    """The kill switch is set: no money call may go out (the message is the operator's reason)."""


class RunLockLost(Stop):
    """A settle run's lock lapsed, so the run stops before its next money call and leaves the deadline to
    whichever run holds the lock now."""


class Waiting(Stop):
    """A journal or settlement has not reached a final status within the wait; a later run resumes it."""


class Rewind(Stop):
    """The server said it dropped messages: stop reading, commit what was read, reconnect from the cursor."""
