"""Who a web or REST customer is: a session the server issued, or an id the bank's backend vouches for.

A client never names its customer. Each request is resolved to a :class:`WebCustomer` from, in
this order:

1. ``Authorization: Bearer <token>``:

   - the backend key (``TELLER_BACKEND_API_KEY``) with ``X-Teller-Customer: <the bank's customer
     id>``: a bank's own server, which has authenticated the customer, speaks for them;
   - a session token from ``POST /api/sessions`` (API clients);
   - an HS256 JSON Web Token signed with ``TELLER_CUSTOMER_TOKEN_KEY`` whose ``sub`` is the bank's
     customer id, ``aud`` is ``"teller"`` and ``exp`` is set (RFC 7519; PyJWT verifies signature,
     audience and expiry): a bank's app hands its logged-in customer a short-lived token;

   a bearer credential that is none of these (forged, expired, a JWT while no key is configured,
   a token valid for more than :data:`MAX_TOKEN_HOURS`) is a 401; it is never ignored in favour of
   a cookie. ``Authorization`` or ``X-Teller-Customer`` given twice is a 400 (a proxy appending
   one cannot be steered by the client). The bank's customer id is read as UTF-8 and trimmed, the
   same from the header, a token's ``sub`` and ``teller forget``.
2. the session cookie, set by the chat page (``GET /``): signed, ``HttpOnly``, ``SameSite=Lax``
   (a link from another site keeps the customer's session; cross-site posts are refused anyway,
   the API taking JSON only); in production or over HTTPS ``Secure`` and named
   ``__Host-teller_session``, which no other subdomain can set (no session fixation);
   ``teller_session`` otherwise.
3. nothing: a 401 that says how to get a session.

Sessions are random 144-bit ids signed with itsdangerous (HMAC-SHA1 over the id and its issue
time; ``TELLER_SESSION_DAYS`` long, 30 by default). The signing key is ``TELLER_SESSION_SECRET``,
or a random key created once in the database's deployment settings, so every replica reading the
same database accepts the same sessions. Rotating the secret ends every session.

**Nothing a client sends is stored as an id.** The conversation's user id is a keyed digest:
``w_`` + 32 hex digits of HMAC-SHA256 over the session id, or ``c_`` + the same over the bank's
customer id, under a per-installation key (``web_customer_key``, created once, never rotated:
a verified customer keeps their conversation across sessions and devices). A client's
``client_message_id`` is stored only as a digest under the same key (:meth:`Identities.platform_id`).
To erase a verified customer, name them by the bank's id: :func:`stored_user_id` maps it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jwt
from fastapi import HTTPException, Request
from fastapi.security.utils import get_authorization_scheme_param
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import SecretStr

if TYPE_CHECKING:
    from bot.storage import Store

log = logging.getLogger(__name__)

SESSION_COOKIE = "teller_session"
#: The cookie's name when it is ``Secure`` (production, HTTPS): the ``__Host-`` prefix makes the
#: browser refuse it from any other host or path (RFC 6265bis section 4.1.3.2).
SECURE_SESSION_COOKIE = "__Host-teller_session"
#: Longest a customer token may be valid for (hours from now to its ``exp``): they are short-lived.
MAX_TOKEN_HOURS = 24
#: Header naming the customer a backend-key request speaks for.
CUSTOMER_HEADER = "x-teller-customer"
#: Deployment settings holding the generated keys (64 hex digits each), created on first use.
SESSION_KEY_SETTING, CUSTOMER_KEY_SETTING = "web_session_key", "web_customer_key"
#: The ``aud`` claim a customer token must carry.
AUDIENCE = "teller"
#: Longest bank customer id accepted (characters).
MAX_CUSTOMER_ID = 200
_SALT = "teller.web.session"
_STORED_FORM = re.compile(r"^[wc]_[0-9a-f]{32}$")
#: What a refused credential is told (the same whatever was wrong with it).
INVALID = (
    "the session or token is invalid or has expired: start a new session (POST /api/sessions, or "
    "reload the chat page)"
)
MISSING = (
    "no session: open the chat page, or POST /api/sessions and send its token as 'Authorization: "
    "Bearer <token>'"
)


@dataclass(frozen=True)
class WebCustomer:
    """The customer a request is from. ``user_id``: what the store keeps (``w_…`` or ``c_…``);
    ``verified``: the bank vouched for them (backend key or signed token); ``backend``: the request
    came from the bank's server itself (backend key), whose address is no customer's; ``segment``:
    the segment a customer token names (its ``segment`` claim)."""

    user_id: str
    verified: bool = False
    backend: bool = False
    segment: str | None = None


@dataclass(frozen=True)
class Session:
    """A newly issued session: the ``token`` to hand the client, and its customer."""

    token: str
    customer: WebCustomer
    max_age: int


def _secret(value: SecretStr | str | None) -> bytes | None:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    return raw.encode() if raw else None


def _installation_key(store: Store, setting: str) -> bytes:
    deployment = store.deployment
    found = deployment.get(setting) or deployment.setdefault(
        setting, secrets.token_hex(32), actor="system:web"
    )
    return bytes.fromhex(found.value)


class Identities:
    """Issues sessions and resolves requests to customers (see the module's docstring). Thread-safe."""

    def __init__(
        self,
        signing_key: bytes,
        customer_key: bytes,
        session_days: float = 30.0,
        customer_token_key: SecretStr | str | None = None,
        backend_api_key: SecretStr | str | None = None,
        known: Callable[[str], bool] | None = None,
    ) -> None:
        self._serializer = URLSafeTimedSerializer(signing_key, salt=_SALT)
        self._customer_key = customer_key
        #: Whether a web user id has a conversation stored (:meth:`verified` keeps a customer a
        #: Teller of before stored under another normal form of their id on that stored id).
        self._known = known
        self.max_age = int(session_days * 86400)
        self._token_key = _secret(customer_token_key)
        self._backend_key = _secret(backend_api_key)
        #: Read only the ``__Host-`` cookie (production: a ``teller_session`` cookie planted by a
        #: sibling subdomain must not be taken for the customer's session).
        self.secure_only = False

    @classmethod
    def from_store(
        cls,
        store: Store,
        session_secret: SecretStr | str | None = None,
        session_days: float = 30.0,
        customer_token_key: SecretStr | str | None = None,
        backend_api_key: SecretStr | str | None = None,
    ) -> Identities:
        """Keys from the settings, else the installation's generated ones (shared by replicas)."""
        signing = _secret(session_secret) or _installation_key(store, SESSION_KEY_SETTING)
        return cls(
            signing,
            customer_key(store),
            session_days,
            customer_token_key,
            backend_api_key,
            known=lambda user_id: store.conversations.conversation_id("web", user_id) is not None,
        )

    # ------------------------------------------------------------------------------ ids

    def _digest(self, kind: str, value: str) -> str:
        return hmac.new(self._customer_key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def verified(self, customer_id: str) -> WebCustomer:
        """The customer the bank knows as ``customer_id`` (read by :func:`customer_id_form`). One a
        Teller of before stored under another normal form of the id (:func:`legacy_forms`), and only
        there, keeps that stored id: a backend sending the id in both forms after an upgrade would
        otherwise start a second conversation, which an erasure by the bank's id would not reach.
        The look-up costs one or two queries, and only for an id whose forms differ (non-ASCII)."""
        composed = "c_" + self._digest("customer", customer_id_form(customer_id))
        if self._known is not None:
            legacy = ["c_" + self._digest("customer", form) for form in legacy_forms(customer_id)]
            if legacy and not self._known(composed):
                return WebCustomer(next((i for i in legacy if self._known(i)), composed), verified=True)
        return WebCustomer(composed, verified=True)

    def platform_id(self, customer: WebCustomer, client_message_id: str) -> str:
        """The stored platform id of a client's message id: the same id from the same customer is
        the same message (a retry), and the client's value is not kept."""
        return f"{customer.user_id}:{self._digest('message', client_message_id)[:24]}"

    # ------------------------------------------------------------------------------ sessions

    def issue(self) -> Session:
        """A new anonymous session."""
        sid = secrets.token_urlsafe(18)
        customer = WebCustomer("w_" + self._digest("session", sid))
        return Session(self._serializer.dumps(sid), customer, self.max_age)

    def session(self, token: str) -> WebCustomer | None:
        """The session's customer; None for a token that is not a valid, unexpired session."""
        try:
            sid = self._serializer.loads(token, max_age=self.max_age)
        except BadSignature:  # includes SignatureExpired
            return None
        return WebCustomer("w_" + self._digest("session", sid)) if isinstance(sid, str) else None

    # ------------------------------------------------------------------------------ requests

    def resolve(self, request: Request) -> WebCustomer:
        """The customer ``request`` is from. Raises ``HTTPException`` 401 (no credential, or one
        that does not hold) or 400 (a backend-key request naming no usable customer id)."""
        for header in ("authorization", CUSTOMER_HEADER):
            if len(request.headers.getlist(header)) > 1:
                raise HTTPException(400, f"the {header} header is given more than once")
        scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
        if scheme:
            customer = self._bearer(request, token) if scheme.lower() == "bearer" and token else None
            if customer is None:
                log.warning("customer_credential_refused", extra={"fields": {"path": request.url.path}})
                raise HTTPException(401, INVALID, headers={"WWW-Authenticate": "Bearer"})
            return customer
        cookie = _cookie(request, self.secure_only)
        if cookie:
            customer = self.session(cookie)
            if customer is None:
                raise HTTPException(401, INVALID)
            return customer
        raise HTTPException(401, MISSING, headers={"WWW-Authenticate": "Bearer"})

    def backend(self, request: Request) -> WebCustomer | None:
        """For an endpoint only a bank's backend may call (``POST /api/outcomes``): admits a request
        carrying the backend key (``Authorization: Bearer <TELLER_BACKEND_API_KEY>``) and returns the
        customer its ``X-Teller-Customer`` names, or None when it names none (the header is optional
        here). Raises ``HTTPException`` 403 while no backend key is configured or for a customer's
        credential (a session, a cookie, a customer token), 401 without a credential or with a wrong
        one, 400 for a header given twice or an unusable customer id."""
        for header in ("authorization", CUSTOMER_HEADER):
            if len(request.headers.getlist(header)) > 1:
                raise HTTPException(400, f"the {header} header is given more than once")
        if self._backend_key is None:
            raise HTTPException(
                403, "backend endpoints are off: set TELLER_BACKEND_API_KEY on the server to turn them on"
            )
        scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
        if scheme.lower() == "bearer" and token and hmac.compare_digest(token.encode(), self._backend_key):
            if request.headers.get(CUSTOMER_HEADER) is None:
                return None
            return self._bearer(request, token)
        if (scheme.lower() == "bearer" and token and self._bearer(request, token) is not None) or (
            not scheme and _cookie(request, self.secure_only)
        ):
            raise HTTPException(
                403, "only the bank's backend (TELLER_BACKEND_API_KEY) may call this endpoint"
            )
        log.warning("backend_key_refused", extra={"fields": {"path": request.url.path}})
        raise HTTPException(
            401,
            "the bank's backend key is required (Authorization: Bearer <TELLER_BACKEND_API_KEY>)",
            headers={"WWW-Authenticate": "Bearer"},
        )

    def page_customer(self, request: Request) -> WebCustomer | None:
        """The chat page's session from its cookie; None when it has none that holds."""
        cookie = _cookie(request, self.secure_only)
        return self.session(cookie) if cookie else None

    def _bearer(self, request: Request, token: str) -> WebCustomer | None:
        if self._backend_key is not None and hmac.compare_digest(token.encode(), self._backend_key):
            customer_id = _utf8(request.headers.get(CUSTOMER_HEADER) or "").strip()
            if not customer_id or len(customer_id) > MAX_CUSTOMER_ID or not customer_id.isprintable():
                raise HTTPException(
                    400,
                    "the backend key needs the customer's id in X-Teller-Customer "
                    f"(1-{MAX_CUSTOMER_ID} characters)",
                )
            return WebCustomer(self.verified(customer_id).user_id, verified=True, backend=True)
        customer = self.session(token)
        if customer is not None or self._token_key is None:
            return customer
        try:
            claims = jwt.decode(
                token,
                self._token_key,
                algorithms=["HS256"],
                audience=AUDIENCE,
                options={"require": ["sub", "exp", "aud"]},
            )
        except jwt.PyJWTError as exc:
            if token.count(".") == 2:  # a JWT's shape: the bank's token, not a lapsed session
                _token_refused(_JWT_REFUSALS.get(type(exc), type(exc).__name__))
            return None
        subject, segment, expires = claims.get("sub"), claims.get("segment"), claims.get("exp")
        if not isinstance(subject, str) or len(subject.strip()) > MAX_CUSTOMER_ID:
            _token_refused("sub")
            return None
        if not subject.strip() or not subject.strip().isprintable():
            _token_refused("sub")
            return None
        if not isinstance(expires, int | float) or expires - time.time() > MAX_TOKEN_HOURS * 3600:
            _token_refused("exp too far")  # not short-lived: a leaked token would last too long
            return None
        if segment is not None and not (
            isinstance(segment, str) and SEGMENT.fullmatch(segment) and not personal_segment(segment)
        ):
            _token_refused("segment")
            return None
        return WebCustomer(self.verified(subject).user_id, verified=True, segment=segment)


#: Why PyJWT refused a customer token, as ``customer_token_refused`` logs it (a bank integrating its
#: token signer has the reason to go by; the 401 itself says no more than for a lapsed session).
_JWT_REFUSALS: dict[type[Exception], str] = {
    jwt.ExpiredSignatureError: "expired",
    jwt.InvalidAudienceError: "aud",
    jwt.MissingRequiredClaimError: "missing claim",
    jwt.InvalidSignatureError: "signature",
    jwt.InvalidAlgorithmError: "algorithm (HS256 only)",
    jwt.ImmatureSignatureError: "not yet valid",
    jwt.DecodeError: "malformed",
}


def _token_refused(reason: str) -> None:
    """Log why a customer token was refused (no token, no claim values)."""
    log.warning("customer_token_refused", extra={"fields": {"reason": reason}})


#: A segment's form (``retail``, ``premier``, ``sme-north``).
SEGMENT = re.compile(r"[A-Za-z0-9_.-]{1,50}")


#: What a segment may not be (:func:`personal_segment`): values that identify a customer by
#: themselves. Codes that merely hold digits ("cohort.202401011200", "promo-12345678") read as a
#: phone or an account number to the redactor, and stay allowed.
_PERSONAL_SEGMENT_KINDS = frozenset({"card", "iban", "email", "ssn", "nino", "national_id", "credential"})


def personal_segment(segment: str) -> bool:
    """Whether a segment's value is personal data (a card number, an IBAN, an e-mail address, an
    identity number sent by mistake as the segment): such a value is refused, for a segment is
    stored and reported as written, never redacted."""
    from bot.privacy.redaction import scan

    return any(f.kind in _PERSONAL_SEGMENT_KINDS for f in scan(segment).findings)


def _cookie(request: Request, secure_only: bool) -> str | None:
    secure = request.cookies.get(SECURE_SESSION_COOKIE)
    return secure if secure_only else secure or request.cookies.get(SESSION_COOKIE)


def _utf8(value: str) -> str:
    """A header value as the UTF-8 it was sent in (ASGI servers hand headers over as Latin-1).
    Raises ``HTTPException`` 400 for bytes that are not UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise HTTPException(400, "X-Teller-Customer must be UTF-8") from None


def customer_key(store: Store) -> bytes:
    """The installation's key for customers' stored ids (created on first use)."""
    return _installation_key(store, CUSTOMER_KEY_SETTING)


def customer_id_form(customer_id: str) -> str:
    """The bank's customer id as Teller reads it, from a header, a token, ``teller forget`` or the
    erasure endpoint alike: trimmed and in Unicode's composed form (NFC), so that "Cüst" typed with
    a combined ü (U+00FC) and with u and a combining diaeresis (U+0308, as macOS terminals and some
    clients send it) is one customer, and erasing either form erases them."""
    return unicodedata.normalize("NFC", customer_id.strip())


def stored_user_id(store: Store, user_id: str) -> str:
    """The stored web user id for what an operator typed: a stored id (``w_…``/``c_…``) as it is, or
    an id stored in clear before sessions existed, else the bank's customer id of a verified
    customer, mapped (:func:`customer_id_form`; an id that a Teller of before stored in another
    normal form, and only there, is found in that form)."""
    if _STORED_FORM.match(user_id) or store.conversations.conversation_id("web", user_id) is not None:
        return user_id
    key = customer_key(store)

    def digest(form: str) -> str:
        return "c_" + hmac.new(key, f"customer:{form}".encode(), hashlib.sha256).hexdigest()[:32]

    composed = digest(customer_id_form(user_id))
    if store.conversations.conversation_id("web", composed) is not None:
        return composed
    for form in legacy_forms(user_id):
        legacy = digest(form)
        if store.conversations.conversation_id("web", legacy) is not None:
            return legacy
    return composed


def legacy_forms(customer_id: str) -> list[str]:
    """The forms other than :func:`customer_id_form`'s under which a Teller of before stored
    ``customer_id`` (the form it was sent in: decomposed, or as typed), in the order they are
    looked for; empty for an id whose forms are all one (ASCII, say)."""
    composed = customer_id_form(customer_id)
    forms = (unicodedata.normalize("NFD", customer_id.strip()), customer_id.strip())
    return [f for i, f in enumerate(forms) if f != composed and f not in forms[:i]]
