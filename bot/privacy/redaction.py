"""Personal data found in free text and replaced by typed placeholders, before anything is kept.

:func:`redact` returns the text to store; :func:`scan` also says what was found, where (offsets in the
text as given) and why (:class:`Scan`, :class:`Finding`). Text without personal data comes back
unchanged, and everything outside a finding stays exactly as typed. :func:`redact_answer` reads a
customer's short reply as the answer to the question put to them ("12/03/1985" after "your date of
birth?"), for a handoff's relays.

What is detected, and by what
-----------------------------
Libraries where one does the job, own rules only where none covers the kind (placeholder in brackets):

- card [CARD]: 13-19 digits, issuer digit 2-6, Luhn (``stdnum.luhn``); ungrouped or in a card grouping
  (4-4-4-4, 4-4-4-4-1..3, 4-6-5 Amex, 4-6-4 Diners, 4-4-4-1..3, 4-4-5), never an arbitrary one (8-6):
  a Luhn-valid number in another grouping of up to seven groups ("4532 0151 1283 030 9", "4 111 1111
  1111 1111", a zero-width character inside a group) is hidden whole as [NUMBER], and 16-19 digits in
  a card grouping that fail Luhn win over a phone number read in their first groups. A card typed
  with the letter O/o for zero or l/I for one ("4532 O151 1283 0309") is a card when Luhn-valid with
  the letters read as digits: only in a card's shape and grouping above (issuer digit first), every
  group holding a digit, at most a third of it letters; not when it fails Luhn, nor in the other
  groupings.
- iban [IBAN]: ``stdnum.iban`` (mod 97, the country's length and national check); after an "IBAN" label
  an IBAN-shaped value that fails its check digits too (a typo is still personal data); without a
  label, one of its country's length and national format (python-stdnum's registry) whose check
  digits fail, written whole or in groups of four; a Polish account number (NRB) written without
  "PL" when valid with it.
- phone [PHONE]: ``phonenumbers``, valid numbers: ``+`` and ``00`` numbers are parsed as
  international; the others are tried in each of the bank's regions (``TELLER_PHONE_REGIONS``,
  :func:`configure_regions`), then of :data:`DEFAULT_REGIONS` (or in ``regions=``), and
  on windows of at most 7 digit groups and 9-13 digits (a longer run, a list of numbers, is read
  window by window; a window never reads across a slash followed by a trunk prefix, the next number
  of a list); in national format of three or more groups, a region whose trunk prefix is 0 needs
  it (India, China, Brazil and Turkey excepted, whose mobiles are written without it), so that a
  list of amounts is not read as a number without its 0; digits with their country code and no
  "+" ("44 7911 123 456") are tried as an international number. A number valid nowhere is still one
  when ``phonenumbers`` calls it possible (a length its region's numbers have, and its general
  pattern: unassigned ranges such as Ofcom's drama range 07700 900xxx are possible, not valid):
  written with ``+`` or ``00`` (the whole number, "0044 7700 900 123", not the national number in its
  last groups), or, with the trunk prefix of the first region (the bank's own) in at most three groups
  joined by spaces or a dash ("07700 900123", "(020) 7946 0958", "07700-900-123"), where no valid
  number is. Kept: an organisation's number (freephone, shared cost, UK 03: ``phonenumbers``' types,
  in its country's grouping, :data:`_BUSINESS_TYPES`) and a merchant's after its card-statement
  descriptor ("PAYPAL *STEAMGAMES 4029357733").
- email [EMAIL]: own rule, Unicode-aware: the local part and the domain may be in any script
  (``josé.garcía@example.com``, ``用户@例子.中国``); the local part keeps to one script, so CJK or
  Cyrillic text glued before a Latin address is not taken with it; at most 254 characters. Also an
  address written out of shape ("sarah[at]outlook.com", "john dot smith at gmail dot com",
  "john.smith @gmail.com", "john.smith@gmail,com") ending in a common top-level domain, in texts of
  up to :data:`OBFUSCATED_MAX_CHARS` characters; after a bare " at ", only when spelt out ("dot") or
  with a dot, digit or underscore in the local part ("I shop at tesco.com" stays); an address
  URL-encoded in a link ("?email=priya.nair%40gmail.com").
- ssn [SSN]: ``stdnum.us.ssn`` on 123-45-6789; any 9 digits after an SSN label.
- nino [NINO]: own rule (python-stdnum has none): AB123456C or AB 12 34 56 C with the valid prefix letters.
- national_id [NATIONAL_ID]: python-stdnum, checksums included. Anywhere: es.dni, es.nie, cn.ric,
  it.codicefiscale, mx.curp, fr.nir, ch.ssn (756...), br.cpf (123.456.789-09), kr.rrn (with its
  dash). Unless something protected overlaps them: in_.aadhaar (4-4-4 or 12 digits), br.cpf and
  tr.tckimlik (11 digits), ch.ssn and kr.rrn (13), us.itin (9xx-xx-xxxx). After an identity-number label
  (DNI, PESEL, BSN, IRD, unique taxpayer reference (and ten digits after UTR), ИНН, 身份证, マイナンバー,
  passport...) also pl.pesel, de.idnr, nl.bsn, ru.inn,
  jp.in_, in_.pan (after "PAN", only its shape AAAAA9999A), ie.pps (PPS, PPSN), au.tfn (TFN, tax file
  number), za.idnr (South African ID), be.nn (also after "national number"), Kenya's KRA PIN (after
  "KRA PIN", its shape A123456789B), and a number no
  checksum accepts (a typo, or a document without a check digit); the labels include cédula, RFC,
  kad pengenalan, henkilötunnus (inflected), BVN, NIN, NIK, KTP, Emirates ID, Iqama, תעודת זהות.
  Malaysia's MyKad as printed (700904-01-5309: birth date and birthplace code valid) and Finland's
  henkilötunnus (180784-554T), by their shape and check, anywhere, when they name a customer aged
  16 to 100 and are not in a file name. Singapore's NRIC/FIN (S1234567D)
  and Hong Kong's identity card number (A123456(3), the check in brackets or not), which
  python-stdnum lacks, by :mod:`bot.privacy.sg_nric` and :mod:`bot.privacy.hk_hkid` (their published
  check characters): anywhere when the check character matches, unless a labelled reference holds
  them (1 in 11 match by chance); after NRIC, HKID, Hong Kong ID (any value, as above) or FIN (only
  an NRIC-shaped value: "fin" is a French word).
- sort_code [SORT_CODE]: own rule: 12-34-56 that is not a date, or 6 digits after a sort-code label
  (sort code, s/c, NSC; groups joined by a space, ``-``, ``/`` or ``.``); the same role's Australian BSB
  (123-456 after "BSB") and US routing number (9 digits after "routing", "ABA", "RTN").
- account [ACCOUNT]: own rule: 6-12 digits after an account label (account, acct, acc, a/c, account
  no./number/#, cuenta, compte, Konto, conto, conta, rekening, счёт, 账号, 口座番号, 계좌번호...), a
  bare run of exactly 8 digits, or a New Zealand account number as printed (2-4-7-2/3 digits
  joined by dashes or spaces, "12-3456-7890123-00", anywhere); an Indian UPI payment address
  (``name@okaxis``: a handle of NPCI's list, :data:`_UPI_ID`); a Canadian transit-institution-
  account ("41374-001-3220421", anywhere); Norway's account as printed after its label
  ("Kontonummer 9710.87.74839"); a Brazilian PIX random key (a UUID after "chave pix", "pix key"
  or "chave aleatória", or in a text naming a "chave").
- cvv [CVV]: own rule: CVV/CVC/CVV2/CCV/security code/security number (not a social security
  number) (and translations, and "the 3 digits / three numbers on the back (of my card)") + 3-4
  digits.
- pin [PIN]: own rule: PIN, MPIN (and translations, 暗証番号...) + 4-6 digits, also being set or changed
  ("pin should be", "pin changed to", "set my pin as"), or 4-6 number words ("four nine two one"; 3-4
  after a CVV label); also 密码/비밀번호 + 4-6 digits. The card may be named between them: "the pin of my
  card is", "the pin for card ending (in/with) 3012 is 4921", "pin for card ****3012: 4921" (so for a
  CVV or a password too); the last four digits naming the card stay, as "card ending 3012" does.
  Another value of the same length in a clause joined to a PIN, CVV or one-time code, without the
  label again, is one too: "... is 4921 and for card ending 4455 is 1234", "... 482913 and then a
  second one 119034" (only another card or account followed by is / was / : / =, or "the other /
  second / new / old one"; the value ends its clause, so a card, a date or an amount after it is not
  cut: "... and my balance is 1234" and "... and for my other card 4455" stay).
- otp [OTP]: own rule: OTP, one-time/verification/2FA/auth/sign-in code, "code from the text", "6 digit
  code", TAN, Malaysia's TAC, 验证码, код... + 4-10 characters with a digit or six digits in two or
  three groups ("804 117", "77 31 58"), or such a value before "is your verification code";
  a bare "code" only as "the code is 482913" (never an error, promo, zip, sort, post... code);
  and as banks' texts and customers say them (4-8 digits, whole or in groups): "Your OTP for txn of
  INR 12,000.00 at FLIPKART is 582041", "Your Harbour Bank code is 77 31 58" (not "your promo /
  sort / reference code is"), "code 739 204 came by sms", "a text from you with code 664120",
  "i got two codes, 902114 and 118630"; pushTAN, Transaktionsnummer, "code from the app".
- password [PASSWORD]: own rule: password/passcode/pwd/pswd/pword (contraseña, mot de passe,
  Passwort/Kennwort, senha, hasło, 密码, пароль, パスワード, 비밀번호...) + is/was/:/= +
  a token that is not an ordinary word ("my password is not working", "is too short", "is expired"
  stay); after "is", a lower-case word in -ed, -ing, -able, -ous, -ent... is the sentence ("my
  passcode was denied"), but one in -ly that ends its clause is the password ("my password is
  butterfly", "is holly and it won't work"), unless a common -ly adjective or adverb ("is silly", "is
  apparently wrong"). The words after that token, to the end of its clause, are the password's too,
  so a passphrase is hidden whole ("my password is blue sky and I can't log in" -> "my password is
  [PASSWORD] and I can't log in"): the clause ends at a punctuation mark, a line break, a word that
  goes on with the sentence (and, but, so, because, which, then, I, it, not, for, to, now..., y, pero,
  et, mais, und, aber..., or a secret's label: "pin 4921" is read as one), a word in another script,
  and after six words or 64 characters in all (a passphrase is a few words, and banks cap a password
  at 20-32 characters: the bound keeps a clause that never ends from taking the message with it).
  A first word that may be the sentence's (one of the ordinary words, "correct"; a word of three
  letters or fewer; after "is", a word of the sentence as above) starts a passphrase only before two
  more words that are neither (one after a short word), letters only: "correct horse battery staple",
  "red fox jumps", "red fox" are passwords; "is correct but ...", "is strong enough", "is expiring
  soon", "is way too long", "is 12 characters long" are not. Without is/was/:/=, only one token with
  a digit ("my password Blue!Sky_99 expired"). Labels naming a secret that is itself a word: memorable word,
  security word, secret word (one token), and security / secret / memorable answer, memorable information /
  name / place, a mother's (mum's, mom's) maiden name or MMN, passphrase (up to four words, "security answer
  is new york", up to a line break or a word that goes on with the sentence or names another secret: "smith
  and ...", "rex pin 4921"): after is/was/:/= the words are the secret, lower-case plain words included ("my
  memorable word is butterfly"), unless they are a state: one of the ordinary words as a whole ("is
  correct", "is new"), or starting with a state or function word ("wrong", "not working", "locked",
  "expired", "forgotten", "the same", "case sensitive", "too long", "being rejected", "an animal"...), a
  lower-case word in -ed ("is hyphenated"), or a word in -ed / -ing going on with the sentence ("is showing
  as incorrect"). A capitalised name straight after a maiden-name label is the name ("mother's maiden
  name Henderson"); a security question in brackets may come between ("the answer to my security question
  (city I was born in) is Galway"); after "security answers:" each "question - answer" or "question =
  answer" pair's answer ("favourite teacher = Mrs Patel, first car = Fiesta"); and after a security
  question asked with its question mark, its answer ("what was the name of your first school? St
  Brigid's": capitalised words, or one lower-case word ending the sentence).
- A passcode of digits is read as a PIN ("my phone banking passcode is 55 21 09"), and so is a
  telephone-banking PIN (telepin); a PIN, CVV or code said with doubt is still one ("my pin, i think
  its 0007 or maybe 7000": both), and so is one after a bare "its / it is / it was" when its digits
  end the clause and are not a year ("forgot my pin its 4821 i think"; "my pin it is 2026 and ...",
  "the code, it was 2000 euros" stay).
- dob [DOB]: own rule: a date in any common format ("3 March 1990", 15/03/1990, 1990年3月15日...)
  after DOB, d.o.b., date of birth, born (on), birthday, fecha de nacimiento, né(e) le, geboren am,
  出生日期, дата рождения..., or before "geboren", 出生, 生まれ ("ich bin am 12.05.1979 geboren",
  "我是1985年6月15日出生的"); and, when none follows the label at once, every date in the 80
  characters after an English label, up to the sentence's end, whose four-digit year is at least ten
  years ago ("DOB on file is wrong: 14/02/1985", "it says 01/01/1970 but it's 11/01/1970"; "my dob is
  fine, but the payment on 14/02/2024 failed" keeps the payment's date); a date under a JSON key
  naming it, a prefix glued on (``"customerDob":"1984-11-23"``).
- expiry [EXPIRY]: own rule: a card's expiry date (MM/YY, MM/YYYY, MMYY, "march 2027") after exp,
  expiry (date), expiration, valid thru... (a passport's expiry too), or after expires / expiring /
  expired within a few words of "card" ("my card expires 10/27"; "my fixed rate expires march 2026"
  stays); and MM/YY right after a card number, with 3-4 digits after it as its [CVV] ("4111 1111 1111
  1111 12/26 123"; not an amount: "12/26, 150.00 charged"), or after the card in words ("expiring
  10/2027", "and it expires march 2027"): with the number they are what a card-not-present
  payment needs (PCI DSS). Also: Spanish, Italian, German labels (caduca, scadenza, verfällt), a
  few words between the label and the date ("expiry date on the new card says 07/30"), the card's
  last digits before the verb ("card ending 3181 - expires 12/27"), a sentence's full stop after
  the date, and MMYY right after a card number when its security code follows ("... 7257 0926 552");
  near a card number (:data:`_EXPIRY_NEAR_CARD`), after a short or foreign label, in a table cell or
  brackets, or with O for 0 ("| Expiry | 09/28 |", "exp (06/26)", "VALID THRU O8/27", "val", "scad.");
  MM.YY or MM-YY after exp, expiry or valid thru with a card about ("valid thru 05-28", a dash only
  before a year a card in use may expire in: "exp 10-12 days" stays).
- credential [CREDENTIAL]: own rule (:data:`_CREDENTIALS`): access tokens and keys in the formats
  their issuers document, hidden whole: Telegram bot tokens (also inside a Bot API URL), Slack
  tokens (xoxb-, xoxp-, xapp-...), JSON Web Tokens, an HTTP bearer token's value and Basic
  credentials ("Authorization: Basic ..."), AWS access key
  ids and (after their name) secret access keys, GitHub, Stripe secret and webhook signing keys,
  Google API keys, PEM and PGP private keys (also pasted without their END line), Slack webhook
  URLs' secret paths, and the password of a URL's user information
  (``postgresql://user:[CREDENTIAL]@host``, at any length). A credential wins over any other kind it
  overlaps (a PIN label before a bot token does not leave the token's tail), and the other
  detectors read the text with it masked, so numbers beside it are found as beside a placeholder.
  (Teller's own configured secrets, whatever their format, are hidden in the log by :mod:`bot.logs`.)
- username [USERNAME]: own rule: the token after a user name's label (username, user name, user
  ID, login ID, login name, "user=" / "login:" / "sign-in:" before it): a person's login identifies
  them, and is half of what signs in as them. The other half given with it as a pair, after a slash
  or a bar ("login: janedoe88 / s3cretP@ss"), is a [PASSWORD].
- number [NUMBER]: own rule: a bare run of 9 or more digits that nothing else claims; a card-shaped
  number that fails Luhn (a typo); a phone-shaped number left unchecked once :data:`PHONE_BUDGET` is
  spent.
- Numbers spelt out ("four nine six seven ...", "oh" and "nought" for 0) or typed a digit at a time
  ("2 7 2 0 - 3 6 7 4 - ..."), at least six digits (:func:`_detect_disguised_numbers`): read as
  the digits they give, a Luhn-valid 13-19 is a [CARD]; after a sort-code, account or SSN label (40
  characters before), 6 / 6-12 / 9 digits are a [SORT_CODE], [ACCOUNT], [SSN]; a valid phone number
  spelt out, or spaced out after a phone word, a [PHONE]; any other 8 or more spelt out a [NUMBER].
  Digits a space apart with no label are left to the digit detectors ("steps 1 2 3 4 5 6").

Not covered: names and postal addresses; the last four digits of a card ("card ending 3012"); a
secret typed after a state word ("my memorable word is wrong, it's rosebud": the label is read once);
a passphrase starting with a state or function word ("my password is the quick brown fox"), or of
two words, the first an ordinary word or a word of the sentence ("is butterfly kisses"), or its words
past the sixth or the 64th character;
letters for digits outside a card's shape (an IBAN, a phone, an account number, a PIN) or in a card
that fails Luhn once read; a number only possible (not valid) in national format of four or more groups
("07 700 900 123") or of another region than the first; a lower-case name in -ed after a maiden-name
label ("is ahmed", read as "is hyphenated" is); a memorable word without "is" or a sign ("memorable
word butterfly").

For labelled values only the value is replaced: ``my cvv is 123`` becomes ``my cvv is [CVV]``. A
one-time code, PIN, CVV or password of 4 characters or more found once is hidden wherever else the
same value is typed in the text ("sms code 571209 not received, got it now 571209").
Placeholders already in the text are left alone, so ``redact(redact(x)) == redact(x)``.

Normalisation
-------------
Detection runs on a normalised copy and replacements are made in the original. The copy is built per
character: NFKC (full-width ``４１１１`` reads ``4111``), every Unicode space (U+00A0, U+202F,
U+2000-U+200A, U+3000, tab, newline...) becomes ``' '``, invisible characters (Unicode's
Default_Ignorable_Code_Point: zero-width spaces and joiners, the soft hyphen, direction marks and
embeddings, variation selectors, Hangul fillers, tags) are dropped (but read as a space between the
digit groups of a number whose other groups are separated by a space, a dash...), and other decimal digits
(Arabic-Indic, Devanagari...) read as ASCII digits. An offset map leads each character of the copy back to the
original, so a finding covers exactly the characters typed. Boundaries are Unicode-aware: values glued
to any script, punctuation or label (``我的卡号是4111…``, ``no.4111…``, ``(IBAN:DE89…)``) are found,
and digit groups may be separated by any space, tab, newline, zero-width character, ``-``, `` - ``,
``/`` or ``.``.

Precision
---------
Dates, times, ISO and unix timestamps (10 digits, 13-digit milliseconds), amounts with a currency or a
locale grouping (``£1,250.00``, ``1.250.000,00 €``, ``1 250 000 EUR``, ``12 500,50 €``, ``CHF
1'250.00``), percentages, IPv4 addresses, versions (``v2.13.0``, ``20261130-054108-c2db79``) and
labelled order/reference/ticket/invoice/transaction/case/SKU numbers ("transaction reference no.
402918374650", "the reference number is 7781234490", "REF-88213047", Sweden's OCR number and
Norway's KID-nummer, "lainanumero", "no transaksi", "nombor rujukan"; never past a word of the
sentence: in "the
payment was 4532 ..." the card is not the payment's reference) are *protected*: the weak
detectors (national-format phones, bare 8-digit accounts, bare sort codes and SSNs, identity numbers a
single check digit validates, and ``[NUMBER]``) give way to them; a card-shaped number failing Luhn
gives way to a labelled reference only. Strong signals win over a protection: a Luhn-valid card in a
card grouping, a valid IBAN, an e-mail address, a ``+`` number, a labelled value, a national id with a
strong checksum. (IPv6 addresses and times need no protection: ``:`` never joins digit groups.)
Digits glued to Latin letters (``c2db79``, ``SKU12345678``) belong to a code and are kept. Bare runs
of 9 or more digits that nothing claims and nothing protects become ``[NUMBER]``: in a customer's
message such a number is more often an identifier than not, and the protections keep the common
harmless ones. Bare runs of 7 digits or fewer are kept unless labelled.

Time bound
----------
Linear in the length of the text. Patterns use bounded or possessive quantifiers (no nested unbounded
repetition), and start with a cheap check so that most positions are rejected at once; the digit
detectors only run around clusters of six or more digits, the card-with-letters one only around an O, o,
l or I next to a digit, the protections only around weak findings. Every candidate is bounded (at most 7
digit groups, a longer run read in windows that move on by at least one group; 64 characters and 5 more
words of at most 32 for a password, cut to 64 characters in all; 64 and 3 more words of at most 32 for a
security answer or passphrase; 254 for an e-mail address) except a bare run of digits, which costs the
same at any length;
validators are cached; ``phonenumbers`` is called at most :data:`PHONE_BUDGET` times per text. The
detectors cost a few microseconds per value found, so a text over :data:`DENSE_MIN_CHARS` characters
with more than :data:`DENSE_VALUES` digit runs and ``@`` signs (a flood, not a customer's question) is
redacted wholesale in one pass: every token holding a digit or ``@``, and the token after a password,
memorable word, security / secret answer or maiden name label, is hidden. 40,000 characters take at most
a few milliseconds to about 15 ms, hostile shapes included (:func:`bot.privacy.bench.bench_redaction`,
run by ``teller bench``).

Errors
------
None: this module defines no exception, and :func:`scan` and :func:`redact` never raise on a ``str``.
A validator that fails counts as "not this kind"; should detection itself fail (a bug), every
e-mail-like token and every number of three digits or more is hidden, with detector ``"fallback"``.
"""
# ruff: noqa: RUF001, RUF002 - other scripts and full-width digits are the point here

from __future__ import annotations

import bisect
import datetime
import itertools
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from operator import attrgetter
from types import MappingProxyType, ModuleType
from typing import Any, Final, NamedTuple

import phonenumbers
import regex  # type: ignore[import-untyped]
from stdnum import iban as std_iban
from stdnum import luhn as std_luhn
from stdnum.au import tfn as std_au_tfn
from stdnum.be import nn as std_be_nn
from stdnum.br import cpf as std_cpf
from stdnum.ca import sin as std_ca_sin
from stdnum.ch import ssn as std_ch_ssn
from stdnum.cl import rut as std_cl_rut
from stdnum.cn import ric as std_ric
from stdnum.de import idnr as std_idnr
from stdnum.dk import cpr as std_dk_cpr
from stdnum.es import dni as std_dni
from stdnum.es import nie as std_nie
from stdnum.fi import hetu as std_fi_hetu
from stdnum.fr import nir as std_nir
from stdnum.ie import pps as std_ie_pps
from stdnum.in_ import aadhaar as std_aadhaar
from stdnum.in_ import pan as std_in_pan
from stdnum.it import codicefiscale as std_codicefiscale
from stdnum.jp import in_ as std_jp_in
from stdnum.kr import rrn as std_rrn
from stdnum.mx import curp as std_curp
from stdnum.my import nric as std_my_nric
from stdnum.nl import bsn as std_bsn
from stdnum.no import fodselsnummer as std_no_fnr
from stdnum.pl import pesel as std_pesel
from stdnum.ro import cnp as std_ro_cnp
from stdnum.ru import inn as std_inn
from stdnum.se import personnummer as std_se_pnr
from stdnum.tr import tckimlik as std_tckimlik
from stdnum.us import itin as std_itin
from stdnum.us import ssn as std_ssn
from stdnum.za import idnr as std_za_idnr

from bot.privacy import hk_hkid, sg_nric

__all__ = [
    "DEFAULT_REGIONS",
    "PHONE_BUDGET",
    "PLACEHOLDERS",
    "Finding",
    "Scan",
    "configure_regions",
    "redact",
    "redact_answer",
    "redact_recurring",
    "scan",
]

#: Kind of personal data -> the placeholder that replaces it.
PLACEHOLDERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "card": "[CARD]",
        "iban": "[IBAN]",
        "phone": "[PHONE]",
        "email": "[EMAIL]",
        "ssn": "[SSN]",
        "nino": "[NINO]",
        "national_id": "[NATIONAL_ID]",
        "sort_code": "[SORT_CODE]",
        "account": "[ACCOUNT]",
        "cvv": "[CVV]",
        "pin": "[PIN]",
        "otp": "[OTP]",
        "password": "[PASSWORD]",
        "dob": "[DOB]",
        "expiry": "[EXPIRY]",
        "credential": "[CREDENTIAL]",
        "username": "[USERNAME]",
        "number": "[NUMBER]",
    }
)

#: Regions tried, in order, for a phone number written in national format (no ``+``): the first
#: one where ``phonenumbers`` finds it valid names it. ``+`` and ``00`` numbers need no region.
DEFAULT_REGIONS: tuple[str, ...] = (
    "GB", "US", "DE", "FR", "ES", "IT", "NL", "IE", "CN", "RU", "IN", "BR", "JP", "AU", "CA",
    "CH", "PT", "PL", "TR", "KR", "SA", "AE", "EG",
)  # fmt: skip

#: At most this many ``phonenumbers.parse`` calls per text (cached results are free).
PHONE_BUDGET: Final = 128


@dataclass(frozen=True, slots=True)
class Finding:
    """One value found: ``text[start:end]`` of the text as given is replaced by ``PLACEHOLDERS[kind]``.

    ``detector`` names what decided (``"stdnum.luhn"``, ``"phonenumbers"``, ``"rule:cvv"``...);
    ``why`` is a short reason that never repeats the value (``"Luhn-valid 16 digits, Visa"``).
    """

    kind: str
    start: int
    end: int
    detector: str
    why: str

    @property
    def placeholder(self) -> str:
        return PLACEHOLDERS[self.kind]


@dataclass(frozen=True, slots=True)
class Scan:
    """The redacted ``text`` and the ``findings`` in it, ordered by ``start`` (original offsets)."""

    text: str
    findings: tuple[Finding, ...]


#: The regions tried for numbers written without a country code: the bank's own first
#: (:func:`configure_regions`, ``TELLER_PHONE_REGIONS``), then :data:`DEFAULT_REGIONS`.
_regions: tuple[str, ...] = DEFAULT_REGIONS
#: The bank's own regions alone: an eight-digit number is read as a phone number only there.
_bank_regions: tuple[str, ...] = ()


def configure_regions(bank_regions: Sequence[str]) -> tuple[str, ...]:
    """Read phone numbers written without a country code in ``bank_regions`` first (ISO 3166
    codes, e.g. ``["SG"]``: a Singapore bank's "9123 4567" is a mobile number there and nowhere in
    :data:`DEFAULT_REGIONS`), then in the default list; the first region is also the one whose
    trunk-prefixed numbers count when merely possible, and a number of eight digits is read as a
    phone number only when valid in one of the bank's regions (with none configured, never; this
    holds for :func:`scan` with ``regions=`` too). For the whole process, called once at start (the
    server and every CLI command read ``TELLER_PHONE_REGIONS``), not while texts are being read.
    Returns the regions now tried, in order. Raises :class:`ValueError` for a code
    ``phonenumbers`` has no metadata for."""
    global _regions, _bank_regions
    codes = [c.strip().upper() for c in bank_regions if c.strip()]
    unknown = [c for c in codes if c not in phonenumbers.SUPPORTED_REGIONS]
    if unknown:
        raise ValueError(f"unknown phone regions: {', '.join(unknown)}")
    _bank_regions = tuple(dict.fromkeys(codes))
    _regions = tuple(dict.fromkeys([*codes, *DEFAULT_REGIONS]))
    _PHONE_CACHE.clear()
    _PHONE_OUTCOMES.clear()
    for cached in list(globals().values()):  # what was cached was read in the regions of before
        if not isinstance(cached, type) and callable(getattr(cached, "cache_clear", None)):
            cached.cache_clear()
    return _regions


class _KnownClean:
    """Texts :func:`redact` left unchanged, remembered so that they are not read again; a text it
    changed is never kept (nothing personal it finds stays in memory). Remembered for the phone
    regions they were read in: emptied when :func:`configure_regions` changes them (as the module's
    other caches are), and a text read under other regions than those in force when it would be
    remembered is not kept (a text read under the old regions by another thread while they changed:
    a reviewer's finding, twice). Emptied whole when full (recurring texts come back at once) and,
    with ``max_age``, once its oldest text is that many seconds old. ``longest``: the longest text
    remembered (characters); ``size``: how many are. Thread-safe: writers take a lock; a reader
    reads one snapshot of (texts, regions, since)."""

    def __init__(self, longest: int, size: int, max_age: float | None = None) -> None:
        self.longest = longest
        self.size = size
        self.max_age = max_age
        self._lock = threading.Lock()
        self._state: tuple[dict[str, None], tuple[str, ...] | None, float] = ({}, None, 0.0)

    def redact(self, text: str) -> str:
        return text if self.is_clean(text) else self.read(text)

    def is_clean(self, text: str) -> bool:
        """Whether ``text`` was found clean before, under the regions in force."""
        texts, regions, since = self._state
        if regions is not _regions or (self.max_age is not None and time.monotonic() - since > self.max_age):
            return False
        return text in texts

    def read(self, text: str) -> str:
        """:func:`redact` of ``text``, read now, remembered if clean."""
        regions = _regions
        cleaned = _redacted(text, regions)
        self.remember_if_clean(text, cleaned, regions)
        return cleaned

    def remember_if_clean(self, text: str, cleaned: str, regions: tuple[str, ...]) -> None:
        """Remember ``text`` when ``cleaned`` (what it was read as, in ``regions``) is the text itself
        and ``regions`` are still those in force."""
        if cleaned != text or len(text) > self.longest:
            return
        with self._lock:
            if regions is not _regions:
                return
            texts, remembered, since = self._state
            now = time.monotonic()
            if (
                remembered is not regions
                or len(texts) >= self.size
                or (self.max_age is not None and now - since > self.max_age)
            ):
                texts = {}
                self._state = (texts, regions, now)
            texts[text] = None

    def cache_clear(self) -> None:
        with self._lock:
            self._state = ({}, None, 0.0)


#: Log records' fields (a channel, a route, an intent, a model version): short and recurring.
_KNOWN_CLEAN = _KnownClean(longest=200, size=4096)
#: Messages and answers: one message's text is read several times on its way (the secrets check,
#: the policy's memo of readings, the store) and a knowledge base's answers recur. A clean one is read
#: once: 5 readings a message before, each 50 us for a Banking77 question and 560 us for a starter
#: answer (453 characters on average; 2 cores, AMD EPYC, 2026-12-05). At most 1,024 texts of 2,000
#: characters (2 million characters: 8 MB if every one is an emoji), none kept more than two minutes,
#: as the policy's memo of readings (names and street addresses are not among what redaction finds,
#: so a message holding only those counts as clean).
_KNOWN_CLEAN_MESSAGES = _KnownClean(longest=2000, size=1024, max_age=120.0)


def redact_recurring(text: str) -> str:
    """:func:`redact` for texts that recur, such as a log record's fields (a channel, a route, an
    intent, a model version): a short text found clean is not read again (about 10 µs saved per
    field, 2 cores, AMD EPYC). Same result as :func:`redact`; thread-safe."""
    return _KNOWN_CLEAN.redact(text)


def redact(text: str) -> str:
    """``text`` with every personal value replaced by its typed placeholder (see the module doc):
    ``redact("my cvv is 123, card 4111 1111 1111 1111")`` -> ``"my cvv is [CVV], card [CARD]"``.

    Text without personal data is returned unchanged; ``redact(redact(x)) == redact(x)``. Never
    raises on a ``str``. A text found clean is remembered (up to 1,024 of at most 2,000 characters,
    never one that was changed) and not read again.
    """
    return _KNOWN_CLEAN_MESSAGES.redact(text)


#: What an operator's question asks the customer for, and the label the answer is then read after
#: (:func:`redact_answer`). Read on the question in lower case; the first that matches decides.
_ASKED_FOR: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), label)
    for pattern, label in (
        (
            r"\b(?:date of birth|d\.?o\.?b\b|birth ?date|birthday|born|date de naissance|geburtsdatum"
            r"|data di nascita|fecha de nacimiento|data de nascimento|geboortedatum|data urodzenia"
            r"|дат[аyу] рождения|doğum tarih)|生年月日|出生日期|تاريخ (?:ال)?ميلاد|जन्म ?तिथि|जन्म की तारीख",
            "date of birth:",
        ),
        (r"\bsort ?code", "sort code:"),
        (r"\biban\b", "iban:"),
        (r"\baccount (?:number|no\b)", "account number:"),
        (r"\b(?:security code|cvv|cvc|(?:3|three) (?:digits|numbers) on the back)", "cvv:"),
        (r"\b(?:card number|long number on (?:the front of )?your card)", "card number:"),
        (
            r"\b(?:one[ -]time|verification|authori[sz]ation|sms|text(?:ed)?) (?:code|passcode)|\botp\b"
            r"|\bcode (?:we|i) (?:just )?(?:sent|texted)",
            "otp:",
        ),
        (r"\bmemorable (?:word|name|place)", "memorable word:"),
        (r"\bmaiden name", "mother's maiden name:"),
        (r"\bsecurity (?:question|answer)|\bfirst pet\b|\bfirst school\b", "security answer:"),
        (r"\bpin\b", "pin:"),
        (r"\b(?:password|passcode)", "password:"),
        (r"\b(?:national insurance|ni number)", "national insurance number:"),
        (r"\b(?:social security|ssn\b)", "ssn:"),
        (r"\bpassport", "passport number:"),
        (r"\b(?:phone|mobile|contact) number", "phone number:"),
        (r"\be-?mail", "email:"),
    )
)
#: Words one of :data:`_ASKED_FOR`'s questions holds (a quick test on a whole text).
_ASKED_HINTS = (
    "birth", "dob", "d.o.b", "born", "naissance", "geburt", "nascita", "nacimiento", "nascimento", "geboorte",
    "urodzenia", "рождения", "doğum", "生年月日", "出生日期", "ميلاد", "जन्म", "sort", "iban", "account",
    "security", "cvv", "cvc",
    "digits", "numbers", "card", "code", "otp", "memorable", "maiden", "pin", "pass", "insurance",
    "ni number", "social", "ssn", "passport", "number", "mail", "first pet", "first school",
)  # fmt: skip
#: Any of :data:`_ASKED_FOR`'s questions (a quick test on a line before finding which).
_ASKED_ANY = re.compile("|".join(f"(?:{pattern.pattern})" for pattern, _ in _ASKED_FOR))
#: What a reply may start with before the value: "yes, it's", "sure:", "mine is".
_REPLY_LEAD = re.compile(
    r"(?:(?:yes|yeah|yep|sure|ok|okay|of course|hi|hello|sorry)\b[ ,.!:-]*)*"
    r"(?:(?:it['’]?s|its|it is|it was|that['’]?s|that is|mine is|my [a-z ]{1,30}? is)\b[ :,-]*)?",
    re.IGNORECASE,
)
#: The labels whose answer is a word, and the replies that are none: a question back, a word of the
#: conversation ("Thanks", "Scam", "Hold on"), or more than a name's three words.
_WORD_LABELS = frozenset({"memorable word:", "mother's maiden name:", "password:", "security answer:"})
_NOT_A_WORD_ANSWER = frozenset(
    """thanks thank cheers stop wait hold hang sorry ok okay yes yeah yep no nope why pardon seriously
    never none dunno lol hi hello hey adopted give can could is are am current debit credit scam fraud
    help please what who how when where which really sure fine great good bad not don't dont can't
    cant i i'm im it's its it that this they we you your my me human person bot agent""".split()  # noqa: SIM905
)


def _a_word_answer(reply: str) -> bool:
    """Whether ``reply`` may be a memorable word, a maiden name or a password: one to three words,
    not a question, none of them a word of the conversation."""
    words = reply.strip().rstrip(".!").split()
    if not 1 <= len(words) <= 3 or reply.strip().endswith("?"):
        return False
    return not any(w.strip(",.!?;:'\"").lower() in _NOT_A_WORD_ANSWER for w in words)


#: Replies longer than this are read as they are: a label put before a long text would reach words
#: far from the answer.
_ANSWER_MAX = 200


def redact_answer(text: str, question: str | None) -> str:
    """:func:`redact` of a customer's reply to ``question`` (a person's last words to them, in a
    handoff): when the question asks for a personal value (:data:`_ASKED_FOR`: a date of birth, a
    sort code, a security code...), a short reply is read as if labelled by it, so a bare answer is
    hidden too ("12/03/1985" after "Can you confirm your date of birth?", "its 774" after "the 3
    digits on the back"); whatever :func:`redact` hides stays hidden. Without such a question, or
    for a reply over :data:`_ANSWER_MAX` characters, exactly :func:`redact`."""
    plain = redact(text)
    if not question or len(text) > _ANSWER_MAX:
        return plain
    asked = question.lower()
    label = next((label for pattern, label in _ASKED_FOR if pattern.search(asked)), None)
    if label is None:
        return plain
    lead = _REPLY_LEAD.match(text)
    start = lead.end() if lead else 0
    if label in _WORD_LABELS and not _a_word_answer(text[start:]):
        return plain  # "Can you call me instead?", "Thanks but no", "Adopted, so not sure"
    prefix = label + " "
    read = redact(prefix + text[start:])
    if not read.startswith(prefix) or read[len(prefix) :] == text[start:]:
        return plain  # the label itself was read otherwise, or the reply holds nothing more
    answered = text[:start] + read[len(prefix) :]
    # every value the plain reading found stays hidden (both readings agree on the text around them)
    return answered if answered.count("[") >= plain.count("[") else plain


def _redacted(text: str, regions: tuple[str, ...]) -> str:
    """:func:`redact` with phone numbers read in ``regions``."""
    spans = _spans(text, regions)
    if not spans:
        return text
    pieces: list[str] = []
    last = 0
    for start, end, hit in spans:
        pieces.append(text[last:start])
        pieces.append(PLACEHOLDERS[hit.kind])
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def scan(text: str, *, regions: Sequence[str] | None = None) -> Scan:
    """What :func:`redact` would store for ``text``, and why: ``Scan(text=redacted, findings=(...))``
    with one :class:`Finding` per replaced value, in order, ``start``/``end`` indexing ``text`` as
    given (``text[f.start:f.end]`` is the value as typed, zero-width characters inside it included).

    ``regions``: ISO 3166 codes of the regions tried, in order, for phone numbers written without
    ``+`` (default: the bank's regions, :func:`configure_regions`, then :data:`DEFAULT_REGIONS`;
    unknown codes are skipped). Never raises on a ``str``.
    """
    if regions is None and _KNOWN_CLEAN_MESSAGES.is_clean(text):
        return Scan(text, ())
    in_force = _regions
    spans = _spans(text, tuple(regions) if regions is not None else in_force)
    if not spans:
        if regions is None:
            _KNOWN_CLEAN_MESSAGES.remember_if_clean(text, text, in_force)
        return Scan(text, ())
    pieces: list[str] = []
    findings: list[Finding] = []
    last = 0
    for start, end, hit in spans:
        pieces.append(text[last:start])
        pieces.append(PLACEHOLDERS[hit.kind])
        findings.append(Finding(hit.kind, start, end, hit.detector, hit.why))
        last = end
    pieces.append(text[last:])
    return Scan("".join(pieces), tuple(findings))


def _spans(text: str, regions: tuple[str, ...]) -> list[tuple[int, int, _Hit]]:
    """The chosen hits with their spans in ``text`` (original offsets), in order, not overlapping."""
    if not text:
        return []
    if len(text) > DENSE_MIN_CHARS and _dense(text):
        return _dense_spans(text)
    try:
        norm = _normalise(text)
        lines = _with_line_breaks(text, norm)
        ctx = _Context(norm.text, regions, lines, _with_tabs(text, norm, lines) if "\t" in text else None)
        ctx.run()
        if norm.source is None:
            chosen = [(hit.start, hit.end, hit) for hit in ctx.chosen()]
        else:
            chosen = [(*norm.original_span(hit.start, hit.end), hit) for hit in ctx.chosen()]
    except Exception:  # a bug here must neither lose the message nor let numbers through
        return _fallback_spans(text)
    out: list[tuple[int, int, _Hit]] = []
    last = 0
    for start, end, hit in chosen:
        if start < last:  # two hits inside one expanded character: keep the first
            continue
        out.append((start, end, hit))
        last = end
    return out


#: A text longer than this (characters) with more than :data:`DENSE_VALUES` numbers and ``@`` signs
#: is redacted wholesale (:func:`_dense_spans`). No customer writes that many numbers in one
#: message; a flood of them (40,000 characters of cards, codes and addresses) would otherwise cost
#: the detectors' per-value work thousands of times over. 800 values keep such a message within
#: 20 ms (measured by ``teller bench``: the detectors need 20-50 ms for 1,200-13,000 values).
DENSE_MIN_CHARS = 4_000
DENSE_VALUES = 800
_DENSE_VALUE = regex.compile(r"\p{Nd}++|@")
#: What a dense text hides: every token with a digit or ``@`` in it (with what is glued to it), and
#: the token after a password label.
_DENSE_TOKEN = regex.compile(
    r"[^\s\p{Nd}@]{0,64}+[\p{Nd}@][^\s]{0,256}+"
    r"(?:\s{1,8}+[^\s\p{Nd}@]{0,64}+[\p{Nd}@][^\s]{0,256}+)*+"  # and the tokens right after it
)
_DENSE_SECRET = regex.compile(
    r"(?i)(?:password|passwd|pwd|passcode|passphrase|pass|mdp|contraseña|mot[ ]de[ ]passe|passwort"
    r"|kennwort|senha|parola|пароль|密码|密碼|パスワード|비밀번호|memorable[ ]word|security[ ]answer"
    r"|secret[ ]answer|maiden[ ]name)[^\S\n]{0,3}"
    r"(?:is|was|es|est|ist|c'est|:|=|是)?[^\S\n]{0,3}(?P<v>[^\s]{1,64}+)"
)


def _dense(text: str) -> bool:
    """Whether ``text`` holds more than :data:`DENSE_VALUES` digit runs and ``@`` signs."""
    return any(count > DENSE_VALUES for count, _ in enumerate(_DENSE_VALUE.finditer(text), 1))


def _dense_spans(text: str) -> list[tuple[int, int, _Hit]]:
    """A dense text (see :data:`DENSE_VALUES`), redacted wholesale in one linear pass: every token
    holding a digit or ``@`` becomes ``[NUMBER]`` (``[EMAIL]`` for an address), and the token after
    a password label ``[PASSWORD]``. Dates and amounts in it are hidden too: precision gives way
    to a bound on the work."""
    why = f"more than {DENSE_VALUES} numbers in one text: every token with a digit or @ hidden"
    spans = [
        (m.start("v"), m.end("v"), _Hit(0, m.start("v"), m.end("v"), "password", "dense", why, 0))
        for m in _DENSE_SECRET.finditer(text)
    ]
    for m in _DENSE_TOKEN.finditer(text):
        found = m.group()
        kind = "email" if "@" in found and not any(ch.isspace() for ch in found) else "number"
        spans.append((m.start(), m.end(), _Hit(0, m.start(), m.end(), kind, "dense", why, 0)))
    spans.sort(key=lambda span: (span[0], -span[1]))
    out: list[tuple[int, int, _Hit]] = []
    last = 0
    for start, end, hit in spans:
        if start >= last:
            out.append((start, end, hit))
            last = end
        elif end > last:  # overlapping: widen the previous span
            prev = out[-1]
            out[-1] = (prev[0], end, prev[2])
            last = end
    return out


_FALLBACK = regex.compile(
    r"(?P<email>[^\s@]{1,64}@[^\s@]{1,253})|(?P<number>\p{Nd}++(?:[ \-./\u00a0]{1,3}\p{Nd}++)*+)"
)


def _fallback_spans(text: str) -> list[tuple[int, int, _Hit]]:
    """Only if detection itself failed (a bug): every e-mail-like token and every number of three
    digits or more is hidden, whatever it is."""
    out: list[tuple[int, int, _Hit]] = []
    for m in _FALLBACK.finditer(text):
        kind = "email" if m.lastgroup == "email" else "number"
        if kind == "number" and sum(ch.isdigit() for ch in m.group()) < 3:
            continue
        out.append((m.start(), m.end(), _Hit(0, m.start(), m.end(), kind, "fallback", "detection failed", 0)))
    return out


# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------

_ASCII_SPACES = str.maketrans("\t\n\r\v\f\x1c\x1d\x1e\x1f", " " * 9)
#: Every Unicode space other than " " (mapped one for one, so offsets do not move).
_OTHER_SPACES = re.compile("[\t\n\r\v\f\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
#: Invisible characters (Unicode's Default_Ignorable_Code_Point, DerivedCoreProperties.txt): zero-width
#: spaces and joiners, the soft hyphen, direction marks and embeddings (U+200E/F, U+202A-U+202E,
#: U+2066-U+2069, U+061C), invisible operators, variation selectors, Hangul fillers, tags. As a
#: character class (ranges) and as a set.
_INVISIBLE_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)  # fmt: skip
_INVISIBLE_CLASS = "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in _INVISIBLE_RANGES)
_ZERO_WIDTH = frozenset(chr(c) for a, b in _INVISIBLE_RANGES for c in range(a, b + 1))
#: Zero-width characters and the non-ASCII decimal digits of the Basic Multilingual Plane (Unicode 14):
#: NFKC keeps both, the normalised copy does not.
_NEEDS_CHARACTER_WORK = re.compile(
    f"[{_INVISIBLE_CLASS}"
    "\u0660-\u0669\u06f0-\u06f9\u07c0-\u07c9\u0966-\u096f\u09e6-\u09ef\u0a66-\u0a6f\u0ae6-\u0aef"
    "\u0b66-\u0b6f\u0be6-\u0bef\u0c66-\u0c6f\u0ce6-\u0cef\u0d66-\u0d6f\u0de6-\u0def\u0e50-\u0e59"
    "\u0ed0-\u0ed9\u0f20-\u0f29\u1040-\u1049\u1090-\u1099\u17e0-\u17e9\u1810-\u1819\u1946-\u194f"
    "\u19d0-\u19d9\u1a80-\u1a89\u1a90-\u1a99\u1b50-\u1b59\u1bb0-\u1bb9\u1c40-\u1c49\u1c50-\u1c59"
    "\ua620-\ua629\ua8d0-\ua8d9\ua900-\ua909\ua9d0-\ua9d9\ua9f0-\ua9f9\uaa50-\uaa59\uabf0-\uabf9]"
)
#: The characters whose normalised form differs from themselves (found only when some exist).
_SPECIAL = regex.compile(r"[\p{NFKC_QC=N}\p{Nd}" + _INVISIBLE_CLASS + r"--[0-9]]", regex.V1)


# A number ends with a digit: the space or dot after it is not one of its separators.
_ZW_IN_NUMBER = re.compile(f"[0-9](?:[ \\-./{_INVISIBLE_CLASS}]*[0-9])*")
#: Every dash-like character (Unicode Pd, the minus sign): read as "-" (one for one).
_DASHES = re.compile(
    "[\u058a\u05be\u1400\u1806\u2010-\u2015\u2212\u2e17\u2e1a\u2e3a\u2e3b\u2e40\u301c\u3030"
    "\ufe31\ufe32\ufe58\ufe63\uff0d]"
)
_ZW_TO_SPACE = str.maketrans(dict.fromkeys("".join(_ZERO_WIDTH), " "))


def _zero_width_as_space(m: re.Match[str]) -> str:
    number = m.group()
    if any(sep in number for sep in " -./") and number != number.translate(_ZW_TO_SPACE):
        return number.translate(_ZW_TO_SPACE)
    return number


class _Normalised(NamedTuple):
    text: str
    #: Original index of each character of ``text``; None when it is the identity.
    source: list[int] | None

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        if self.source is None:
            return start, end
        return self.source[start], self.source[end - 1] + 1


@lru_cache(maxsize=4096)
def _normalise_char(ch: str) -> str:
    if ch in _ZERO_WIDTH:
        return ""
    out = []
    for c in unicodedata.normalize("NFKC", ch):
        if c.isspace():
            out.append(" ")
        elif c in _ZERO_WIDTH:
            continue
        elif c.isdecimal() and not c.isascii():
            out.append(str(unicodedata.decimal(c)))
        else:
            out.append(c)
    return "".join(out)


#: Line breaks (where ``str.splitlines`` breaks): the normalised copy reads them as spaces.
_LINE_BREAK = re.compile("[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")


def _with_line_breaks(text: str, norm: _Normalised) -> str | None:
    """``norm.text`` with "\n" where ``text`` breaks its line; None when it does not (the common case)."""
    breaks = [m.start() for m in _LINE_BREAK.finditer(text)]
    return _put_back(norm.text, norm, breaks, "\n") if breaks else None


def _with_tabs(text: str, norm: _Normalised, lines: str | None) -> str:
    """``lines`` (or ``norm.text``) with "\t" where ``text`` has a tab."""
    tabs = [m.start() for m in re.finditer("\t", text)]
    return _put_back(norm.text if lines is None else lines, norm, tabs, "\t")


def _put_back(normalised: str, norm: _Normalised, positions: list[int], char: str) -> str:
    """``normalised`` with ``char`` at the characters that came from ``positions`` of the text."""
    chars = list(normalised)
    for at in positions:
        i = at if norm.source is None else bisect.bisect_left(norm.source, at)
        if i < len(chars) and (norm.source is None or norm.source[i] == at):
            chars[i] = char
    return "".join(chars)


def _normalise(text: str) -> _Normalised:
    if text.isascii():
        return _Normalised(text.translate(_ASCII_SPACES), None)
    spaced = _DASHES.sub("-", _OTHER_SPACES.sub(" ", text))
    if unicodedata.is_normalized("NFKC", spaced) and _NEEDS_CHARACTER_WORK.search(spaced) is None:
        return _Normalised(spaced, None)
    mapping = {ch: _normalise_char(ch) for ch in set(_SPECIAL.findall(spaced))}
    # One character for one (full-width forms, other digits...): offsets do not move.
    one_for_one = {ord(ch): new for ch, new in mapping.items() if len(new) == 1}
    if one_for_one:
        spaced = spaced.translate(one_for_one)
    changing = {ch: new for ch, new in mapping.items() if len(new) != 1}
    if not changing:
        return _Normalised(spaced, None)
    if _ZERO_WIDTH.intersection(changing):
        # Between the digit groups of a number that other groups separate with a space, a dash...,
        # a zero-width character is a separator too ("4111\u200b1111 1111 1111"); elsewhere it goes.
        spaced = _ZW_IN_NUMBER.sub(_zero_width_as_space, spaced)
    if not any(changing.values()):  # only zero-width characters, dropped
        source = [i for i, ch in enumerate(spaced) if ch not in changing]
        return _Normalised(spaced.translate(dict.fromkeys(map(ord, changing))), source)
    parts: list[str] = []
    source = []
    pos = 0
    for match in re.finditer("[" + "".join(map(re.escape, changing)) + "]", spaced):
        i = match.start()
        if i > pos:
            parts.append(spaced[pos:i])
            source.extend(range(pos, i))
        replacement = changing[spaced[i]]
        parts.append(replacement)
        source.extend([i] * len(replacement))
        pos = i + 1
    if pos < len(spaced):
        parts.append(spaced[pos:])
        source.extend(range(pos, len(spaced)))
    return _Normalised("".join(parts), source)


# --------------------------------------------------------------------------------------------------
# Hits and their resolution
# --------------------------------------------------------------------------------------------------


class _Hit(NamedTuple):
    priority: int
    start: int
    end: int
    kind: str
    detector: str
    why: str
    #: _WEAK: gives way to any protected span (dates, amounts, references...); _REFERENCE_ONLY: only
    #: to a labelled reference; 0: to nothing.
    weak: int


_WEAK = 2
_REFERENCE_ONLY = 1
#: No strong hit is longer (an e-mail address is at most 254 characters; bare digit runs are weak).
_LONGEST_STRONG = 256

# Priorities: the higher one wins an overlap (then the longer, then the earlier).
_P_SECRET = 100  # labelled cvv, pin, otp, password, dob
_P_CREDENTIAL = 102  # access tokens and keys in their issuers' formats: ahead of any other kind
_P_EMAIL = 95
_P_IBAN = 90
_P_LABELLED = 88  # labelled account, sort code, ssn, national id, iban
_P_STRONG_ID = 85  # national ids with a strong checksum or shape
_P_CARD = 80
_P_CARD_SHAPE = 60  # 16-19 digits in a card grouping failing Luhn: longer than any phone number
_P_NINO = 80
_P_PHONE_INTL = 75
_P_SSN = 70
_P_SORT = 68
_P_PHONE_CONTEXT = 58  # national-format phone after a phone word
_P_WEAK_ID = 56
_P_PHONE = 54
_P_ACCOUNT = 40
_P_NUMBER = 30

_PLACEHOLDER = regex.compile(r"\[(?:" + "|".join(p[1:-1] for p in PLACEHOLDERS.values()) + r")\]")


class _Context:
    """One scan: the normalised text, the hits found so far and the protected spans."""

    def __init__(
        self, text: str, regions: tuple[str, ...], lines: str | None = None, cells: str | None = None
    ) -> None:
        self.text = text
        #: ``text`` with a "\n" where the text as given breaks its line (the copy reads every space
        #: as " "): a passphrase ends with its line (:func:`_passphrase_end`).
        self.lines = text if lines is None else lines
        #: ``lines`` with the tabs of the text as given (a spreadsheet's cells; normalising made them
        #: spaces), for :func:`_detect_table_columns`.
        self.cells = self.lines if cells is None else cells
        self.regions = regions
        self.hits: list[_Hit] = []
        self.hard: list[tuple[int, int]] = [m.span() for m in _PLACEHOLDER.finditer(text)]
        self.soft: list[tuple[int, int]] = []  # from labels (references), found with the secrets
        self.phone_calls = 0
        self.strong_starts: list[int] = []  # sorted, with strong_ends: the strong hits so far
        self.strong_ends: list[int] = []
        self.protect_ready = False

    def add(
        self, priority: int, start: int, end: int, kind: str, detector: str, why: str, weak: int = 0
    ) -> None:
        if start < end:
            self.hits.append(_Hit(priority, start, end, kind, detector, why, weak))
            if weak != _WEAK and priority > _P_PHONE_CONTEXT:
                i = bisect.bisect_left(self.strong_starts, start)
                self.strong_starts.insert(i, start)
                self.strong_ends.insert(i, end)

    @cached_property
    def low(self) -> str:
        """The text in lower case (for quick tests of the words a pattern needs)."""
        return self.text.lower()

    def strong_within(self, start: int, end: int) -> list[tuple[int, int]]:
        """The hits that no phone number can win against, overlapping ``[start, end)``."""
        i = bisect.bisect_left(self.strong_starts, end)
        out = []
        while i > 0:
            i -= 1
            if self.strong_ends[i] > start:
                out.append((self.strong_starts[i], self.strong_ends[i]))
            elif self.strong_starts[i] < start - _LONGEST_STRONG:
                break
        return out

    def run(self) -> None:
        _detect_credentials(self)
        text = self.text
        _detect_labels(self)
        if "@" in text:
            _detect_emails(self)
        _detect_shaped(self, _SHAPED_ANY)
        _detect_obfuscated_emails(self)
        _detect_spelt_secrets(self)
        _detect_security_answers(self)
        _detect_made_up_passwords(self)
        _detect_form_lines(self)
        _detect_transcript_answers(self)
        _detect_spelt_words(self)
        _detect_password_variants(self)
        _detect_secrets_given(self)  # (a password or a memorable word needs no digit)
        _detect_disguised_numbers(self)
        if _ANY_DIGIT.search(text) is None:
            return
        _detect_shaped(self, _SHAPED_DIGITS)
        _detect_secrets_said_around(self)
        _detect_shaped_ids(self)
        _detect_table_columns(self)
        _detect_letter_led(self)
        _detect_digit_clusters(self)
        _detect_lookalike_cards(self)
        _detect_card_details(self)
        _detect_nearby_dob(self)
        _continued_secrets(self)
        _repeat_secrets(self)

    # Protected spans ------------------------------------------------------------------------------

    def _protections(self) -> list[tuple[int, int]]:
        if not self.protect_ready:
            # A protection is at most _PROTECTION_MAX long: only the text around weak hits is looked at.
            windows: list[list[int]] = []
            for hit in sorted((h for h in self.hits if h.weak == _WEAK), key=lambda h: h.start):
                lo, hi = max(0, hit.start - _PROTECTION_MAX), min(len(self.text), hit.end + _PROTECTION_MAX)
                if windows and lo <= windows[-1][1]:
                    windows[-1][1] = max(windows[-1][1], hi)
                else:
                    windows.append([lo, hi])
            spans = list(self.soft)
            for lo, hi in windows:
                spans.extend(_protect_num_spans(self.text, lo, hi))
                spans.extend(m.span() for m in _PROTECT_PREFIX.finditer(self.text, lo, hi))
            merged = _merged(spans)
            self._protected = merged
            self._protected_starts = [s for s, _ in merged]
            self._references = _merged(self.soft)
            self._reference_starts = [s for s, _ in self._references]
            self.protect_ready = True
        return self._protected

    def yields(self, hit: _Hit) -> bool:
        """Whether a weak hit gives way to a protected span it overlaps."""
        if hit.weak == _WEAK:
            return self.protected(hit.start, hit.end)
        if hit.weak == _REFERENCE_ONLY:
            self._protections()
            i = bisect.bisect_left(self._reference_starts, hit.end)
            if i == 0 or self._references[i - 1][1] <= hit.start:
                return False
            # A Luhn-valid card that is a group of its own after the reference's first ("ref 123456
            # 4111111111111111"): the reference is the first group, the card is the card.
            ref_start = self._references[i - 1][0]
            return not (hit.kind == "card" and " " in self.text[ref_start : hit.start])
        return False

    def protected(self, start: int, end: int) -> bool:
        """Whether ``[start, end)`` overlaps a protected span (a date, amount, reference...)."""
        spans = self._protections()
        i = bisect.bisect_left(self._protected_starts, end)
        return i > 0 and spans[i - 1][1] > start

    # Resolution -----------------------------------------------------------------------------------

    def chosen(self) -> list[_Hit]:
        """Non-overlapping hits sorted by start: in each group of overlapping hits, the strongest
        first (then the longer, then the earlier); weak hits give way to protected spans; nothing
        touches a placeholder already in the text."""
        hard = [_Hit(1 << 30, start, end, "", "", "", False) for start, end in self.hard]
        hits = sorted(self.hits + hard, key=_START)
        taken: list[_Hit] = []
        if not hits:
            return taken
        if any(hit.weak for hit in hits):
            self._protections()
        protected_starts = self._protected_starts if self.protect_ready else []
        protected = self._protected if self.protect_ready else []
        append = taken.append
        group: list[_Hit] = [hits[0]]
        group_end = hits[0].end
        for hit in hits[1:]:
            if hit.start >= group_end:
                if len(group) == 1:
                    one = group[0]
                    # (a group of one: _choose, inlined)
                    if one.kind:
                        if one.weak == _WEAK:
                            i = bisect.bisect_left(protected_starts, one.end)
                            if not (i > 0 and protected[i - 1][1] > one.start):
                                append(one)
                        elif not (one.weak and self.yields(one)):
                            append(one)
                    group = [hit]
                else:
                    self._choose(group, taken)
                    group = [hit]
                group_end = hit.end
            else:
                group.append(hit)
                if hit.end > group_end:
                    group_end = hit.end
        self._choose(group, taken)
        return taken

    def _choose(self, group: list[_Hit], taken: list[_Hit]) -> None:
        if len(group) == 1:
            hit = group[0]
            if hit.kind and not (hit.weak and self.yields(hit)):
                taken.append(hit)
            return
        kept: list[_Hit] = []
        starts: list[int] = []  # of the kept hits, sorted, with their ends
        ends: list[int] = []
        for hit in sorted(group, key=lambda h: (-h.priority, h.start - h.end, h.start)):
            i = bisect.bisect_left(starts, hit.end)
            if i > 0 and ends[i - 1] > hit.start:  # kept hits never overlap: their ends are sorted too
                continue
            if hit.weak and self.yields(hit):
                continue
            starts.insert(i, hit.start)
            ends.insert(i, hit.end)
            kept.append(hit)
        taken.extend(sorted((h for h in kept if h.kind), key=lambda h: h.start))


_START = attrgetter("start")


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` sorted, overlapping ones merged."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


# --------------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------------

_ANY_DIGIT = re.compile(r"[0-9]")
_DIGIT_RUN = re.compile(r"[0-9]+")
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]+")
#: Between the digit groups of a card, IBAN or identity number (after normalisation).
_SEP = r"(?:[ ]{0,2}[-/.][ ]{0,2}|[ ]{1,3})"


def _digits(s: str) -> str:
    return "".join(_DIGIT_RUN.findall(s))


def _compact(s: str) -> str:
    return _NOT_ALNUM.sub("", s).upper()


#: Before a label word of a script written with spaces: not inside a word (CJK may precede it).
_SPACED_BEFORE = (
    r"(?<![\p{Latin}\p{Cyrillic}\p{Greek}\p{Arabic}\p{Hebrew}\p{Devanagari}\p{Hangul}\p{Thai}\p{N}_])"
)


# --------------------------------------------------------------------------------------------------
# Labelled values: secrets, labelled numbers, and labelled references (protected)
# --------------------------------------------------------------------------------------------------
# Label patterns are matched on the lower-cased text. Each one starts with at least two literal
# characters (its "head"): one pass finds the heads, and only there are the label patterns tried.

_PASSWORD_WORDS = [
    r"pass[ ]?(?:word|wd|code|phrase)s?",
    r"pwd",
    r"pw",
    r"pswd",
    r"pswrd",
    r"pword",
    # UK banks' memorable word and the answers to security questions are secrets of the same kind
    r"memorable[ ](?:word|information|info|answer|name|place|date)",
    r"security[ ](?:answer|word)",
    r"secret[ ](?:answer|word)",
    r"mother['’]?s[ ]maiden[ ]name",
    r"mum['’]?s[ ]maiden[ ]name",
    r"mom['’]?s[ ]maiden[ ]name",
    r"mmn",  # UK banks' abbreviation of mother's maiden name
    r"contraseña",
    r"contrasena",
    r"clave(?:[ ]de[ ]acceso)?",
    r"mot[ ]de[ ]passe",
    r"mdp",
    r"passwort",
    r"kennwort",
    r"senha",
    r"wachtwoord",
    r"hasło",
    r"haslo",
    r"пароль",
    r"şifre(?:m|niz|n)?",
    r"sifre(?:m|niz|n)?",
    r"parola(?:m|nız|niz)",
    r"密码",
    r"密碼",
    r"口令",
    r"パスワード",
    r"비밀번호",
    r"패스워드",
    # (the old / new one, was / is: "كلمة السر القديمة كانت ...")
    r"كلمة[ ](?:المرور|السر)(?:[ ](?:القديمة|الجديدة))?(?:[ ](?:كانت|هي))?",
    # "and the password", the conjunction written onto the word
    r"وكلمة[ ](?:المرور|السر)(?:[ ](?:القديمة|الجديدة))?(?:[ ](?:كانت|هي))?",
    r"पासवर्ड",
]
#: Labels naming a secret that is itself a word or a few: after "is" / ":" / "=" the words are the
#: secret unless they are a state ("my memorable word is butterfly", but "... is not working").
#: A memorable / security / secret *word* is one token; an answer, a name or a phrase may be up to
#: four words ("security answer is new york").
_SECRET_WORD_WORDS = [
    r"memorable[ ]word",
    r"security[ ]word",
    r"secret[ ]word",
    r"parola[ ](?:segreta|chiave)",
    r"palabra[ ](?:secreta|clave)",
    r"mot[ ]secret",
    r"palavra[ ](?:secreta|passe)",
    r"geheimwort",
    r"секретное[ ]слово",
    r"кодовое[ ]слово",
]
#: A maiden name's labels, after which a capitalised word is the name even with no "is" between.
_MAIDEN_WORDS = [
    r"mother(?:['’]?s)?[ ]maiden[ ]name",
    r"mum(?:['’]?s)?[ ]maiden[ ]name",
    r"mom(?:['’]?s)?[ ]maiden[ ]name",
]
_SECRET_PHRASE_WORDS = [
    r"memorable[ ](?:information|info|answer|name|place)",
    r"security[ ]answer",
    r"security_answer",
    r"réponse[ ][àa][ ](?:ma|la|votre)[ ]question[ ](?:secr[èe]te|de[ ]s[ée]curit[ée])",
    r"reponse[ ][àa][ ](?:ma|la|votre)[ ]question[ ](?:secr[èe]te|de[ ]s[ée]curit[ée])",
    r"respuesta[ ]a[ ](?:mi|la|su)[ ]pregunta[ ](?:secreta|de[ ]seguridad)",
    r"antwort[ ]auf[ ](?:meine|die|ihre)[ ]sicherheitsfrage",
    r"risposta[ ]alla[ ]domanda[ ](?:segreta|di[ ]sicurezza)",
    r"resposta[ ][àa][ ](?:minha[ ]|sua[ ])?pergunta[ ](?:secreta|de[ ]seguran[çc]a)",
    r"nazwisko[ ]panie[ńn]skie(?:[ ]matki)?",
    r"apellido[ ]de[ ]soltera(?:[ ]de[ ](?:mi[ ]|tu[ ]|su[ ])?madre)?",
    r"nom[ ]de[ ]jeune[ ]fille(?:[ ]de[ ](?:ma[ ]|votre[ ])?m[èe]re)?",
    r"mädchenname(?:[ ]der[ ]mutter|[ ](?:meiner|ihrer)[ ]mutter)?",
    r"madchenname(?:[ ]der[ ]mutter|[ ](?:meiner|ihrer)[ ]mutter)?",
    r"cognome[ ](?:da[ ]nubile|di[ ]nascita)[ ]della[ ]madre",
    r"nome[ ]de[ ]solteira(?:[ ]da[ ]m[ãa]e)?",
    r"meisjesnaam(?:[ ]van[ ](?:mijn[ ]|uw[ ])?moeder)?",
    r"девичья[ ]фамилия(?:[ ]матери)?",
    r"security[ ]question[ ]answer",
    r"secret[ ]question[ ]answer",
    r"answer[ ]to[ ](?:my|the)[ ](?:security|secret)[ ]question",
    r"secret[ ]answer",
    *_MAIDEN_WORDS,
    r"mmn",  # UK banks' abbreviation of mother's maiden name
    r"maiden[ ]name[ ]of[ ](?:(?:my|your|the)[ ])?(?:mother|mum|mom)",
    r"pass[ ]?phrase",
    r"first[ ]pet['’]s[ ]name",
]
#: A security question's answer said as a fact, the verb in the label: "my first pet was called Fluffy".
_SECRET_CALLED_WORDS = [
    r"first[ ]pet[ ](?:is|was)[ ](?:called|named)",
    r"first[ ]pet[ ](?:called|named)",
]
_PIN_WORDS = [
    r"pin(?:[ -]?(?:code|number|numbr|nmber|numer|no\.?|nr\.?|nummer|número|numero|код|kod))?",
    r"mpin",
    r"m-pin",
    r"tele-?pin",
    r"telephone[ ]banking[ ]pin",
    r"phone[ ]banking[ ]pin",
    r"pin码",
    r"pin碼",
    r"code[ ](?:pin|confidentiel|secret)",  # "code secret": the French name of a card's PIN
    # "NIP": a card's PIN in Mexico and Quebec, only said of a card or as one's own ("NIP" alone is
    # also Poland's tax number: "faktura z NIP 2023")
    r"nip[ ]de[ ](?:mi|la|tu|su|ma|votre|la[ ]tarjeta|mi[ ]tarjeta|ma[ ]carte|la[ ]carte)"
    r"(?:[ ](?:tarjeta|carte)(?:[ ]de[ ](?:d[ée]bito|cr[ée]dito))?)?"
    # (the card's number may come between: "el NIP de mi tarjeta 4111 1111 1111 1111 es 9031")
    r"(?:[ ][0-9](?:[0-9]|[ \-](?=[0-9])){11,22}(?![0-9]))?",
    r"mi[ ]nip",
    r"mon[ ]nip",
    r"nip[ ](?:es|est|era|était)(?=[ ]{1,3}[0-9])",
    r"código[ ]pin",
    r"codigo[ ]pin",
    r"codice[ ]pin",
    r"kod[ ]pin",
    r"geheimzahl",
    r"пин(?:-?код)?",
    r"暗証番号",
    r"핀[ ]번호",
    r"핀번호",
    r"الرقم[ ]السري",
    r"पिन",
]
#: A passcode made of digits is read as a PIN is (its digit groups together).
_PASSCODE_WORDS = [r"pass[ ]?code"]
_CVV_WORDS = [
    r"cvv(?:[ ]?2(?![0-9]))?(?:[ \-]?(?:code|код|kod|c[óo]digo|nummer|number|no\.?))?",
    r"cvv码",
    r"cvc(?:[ ]?2(?![0-9]))?(?:[ \-]?(?:code|код|kod|c[óo]digo|nummer|number|no\.?))?",
    r"cid",
    r"cv2",
    r"ccv",
    r"csc",
    r"card[ ]security[ ]code",
    r"security[ ]code",
    # "security number on the back: 482" (not a social security number)
    r"security(?<!social[ ]security)[ ](?:number|no\.?|nr\.?)",
    r"sec\.?[ ]code",
    r"card[ ]verification[ ](?:code|value|number)",
    r"código[ ]de[ ]seguridad",
    r"codigo[ ]de[ ]seguridad",
    # "el código de atrás 206", "o código de trás": the card's code on its back
    r"código[ ]de[ ](?:atr[áa]s|tr[áa]s)",
    r"codigo[ ]de[ ](?:atr[áa]s|tr[áa]s)",
    r"cryptogramme(?:[ ]visuel)?",
    r"code[ ]de[ ]s[ée]curit[ée]",
    r"kartenprüf(?:nummer|ziffer|code)",
    r"prüf(?:nummer|ziffer|code)",
    r"sicherheitscode",
    r"codice[ ]di[ ]sicurezza",
    r"código[ ]de[ ]seguran[çc]a",
    r"codigo[ ]de[ ]seguran[çc]a",
    r"beveiligingscode",
    r"kod[ ](?:cvv|cvc|bezpiecze[ńn]stwa)",
    r"код[ ]безопасности",
    r"安全码",
    r"安全碼",
    r"安全代码",
    r"セキュリティ[ ]?コード",
    r"보안[ ]?코드",
    r"güvenlik[ ]kodu",
    r"guvenlik[ ]kodu",
    r"رمز[ ]الأمان",
    # described rather than named: "the 3 digits on the back", "4 digit code on the front"
    *(
        rf"{n}{sep}digits?(?:[ ](?:security|verification))?[ ]code(?:[ ]on[ ]the[ ](?:back|front))?"
        for n in ("3", "4", "three", "four")
        for sep in ("[ ]", "-")
    ),
    *(
        rf"{last}{n}[ ](?:digits|numbers)[ ](?:on|at)[ ]the[ ](?:back|front)(?:[ ]of[ ](?:the|my)[ ]card)?"
        for n in ("3", "4", "three", "four")
        for last in ("", "last[ ]")
    ),
    r"digits[ ](?:on|at)[ ]the[ ]back(?:[ ]of[ ](?:the|my)[ ]card)?",
    r"numbers[ ](?:on|at)[ ]the[ ]back(?:[ ]of[ ](?:the|my)[ ]card)?",
    r"code[ ]on[ ]the[ ](?:back|front)",
    r"три[ ]цифры(?:[ ]на[ ](?:обороте|обратной[ ]стороне))?",
    r"код[ ]на[ ]обороте",
    r"tres[ ]d[íi]gitos(?:[ ](?:de[ ]atr[áa]s|del[ ]reverso))?",
    r"trois[ ]chiffres[ ](?:au|du)[ ]dos",
    r"3[ ]chiffres[ ](?:au|du)[ ]dos",
    r"drei[ ]ziffern[ ]auf[ ]der[ ]r[üu]ckseite",
    r"3[ ]ziffern[ ]auf[ ]der[ ]r[üu]ckseite",
    r"tre[ ]cifre[ ](?:sul[ ]retro|dietro)",
    r"tr[êe]s[ ]d[íi]gitos[ ](?:do[ ]verso|atr[áa]s)",
    r"卡背面(?:的)?(?:三位数|3位数)",
]
_OTP_WORDS = [
    r"otp(?:[ ]code)?",
    r"one[ -]?time[ ](?:pass(?:code|word)?|code|pin|key)",
    r"verification[ ](?:code|pin|number)",
    r"verify[ ]code",
    r"authentication[ ]code",
    r"authori[sz]ation[ ]code",
    r"auth[ ]code",
    r"2fa(?:[ ]code)?",
    r"mfa(?:[ ]code)?",
    r"two[ -]factor(?:[ ]auth(?:entication)?)?[ ]code",
    r"sms[ -]?code",
    r"code[ ](?:from|in)[ ]the[ ](?:text|sms|message|app|authenticator(?:[ ]app)?|e-?mail)",
    r"code[ ](?:texted|sent)[ ]to[ ](?:me|my[ ](?:phone|mobile))",
    r"code[ ](?:texted|sent)[ ](?:by|via|in[ ]a)[ ](?:text|sms|message|e-?mail)",
    r"code[ ]re[çc]u[ ]par[ ]sms",
    r"log-?in[ ]code",
    r"sign-?in[ ]code",
    r"digits?[ ]code",  # "the 6 digit code 482913 expired"
    # "the 6 digit number you sent: 482913", "the number you texted me is 482913" (a PII probe's;
    # "a 6 digit number 250000 on my statement" is not one)
    r"number[ ](?:you|u|they|the[ ]bank)[ ](?:just[ ])?(?:sent|texted|sms['’]?d|gave)"
    r"(?:[ ](?:me|to[ ]me|us))?",
    r"security[ ]pin",
    r"access[ ]code",
    r"backup[ ]codes?",
    r"recovery[ ]codes?",
    r"tan",
    r"mtan",
    r"m-tan",
    r"push-?tan(?:-app)?",
    r"photo-?tan(?:-app)?",
    r"chip-?tan",
    r"sms-?tan",
    r"transaktionsnummer",
    r"código[ ](?:de[ ]verificaci[óo]n|otp|sms|de[ ]confirmaci[óo]n|de[ ]un[ ]solo[ ]uso|de[ ]acceso)",
    r"código[ ]do[ ]sms",
    r"codigo[ ](?:de[ ]verificaci[óo]n|otp|sms|de[ ]confirmaci[óo]n|de[ ]un[ ]solo[ ]uso|de[ ]acceso)",
    r"clave[ ]din[áa]mica",
    r"code[ ](?:de[ ]v[ée]rification|de[ ]confirmation|de[ ]validation|sms|otp|[àa][ ]usage[ ]unique|unique)"
    r"(?:[ ]re[çc]u(?:[ ]par[ ](?:sms|e-?mail|mail|texto))?)?",
    r"code[ ]de[ ]s[ée]curit[ée]",  # (after the CVV's reading: "... pour le paiement de 45,90 EUR est")
    r"bestätigungs-?code",
    r"bestatigungs-?code",
    r"verifizierungs-?code",
    r"einmal(?:code|passwort|kennwort)",
    r"codice[ ](?:di[ ]verifica|otp|di[ ]conferma|sms|monouso)",
    r"código[ ]de[ ](?:verifica[çc][ãa]o|confirma[çc][ãa]o)",
    r"codigo[ ]de[ ](?:verifica[çc][ãa]o|confirma[çc][ãa]o)",
    r"verificatiecode",
    r"inlogcode",
    r"kod[ ](?:weryfikacyjny|sms|jednorazowy|otp|potwierdzaj[ąa]cy|blik)",
    r"blik(?:[ ](?:code|kod))?",
    r"код[ ](?:подтверждения|из[ ](?:смс|sms)|верификации)",
    r"одноразовый[ ](?:код|пароль)",
    r"смс-?код",
    r"验证码",
    r"驗證碼",
    r"校验码",
    r"动态码",
    r"动态密码",
    r"認証コード",
    r"確認コード",
    r"ワンタイムパスワード",
    r"인증[ ]?번호",
    r"인증[ ]?코드",
    r"doğrulama[ ]kodu",
    r"dogrulama[ ]kodu",
    r"onay[ ]kodu",
    r"رمز[ ](?:التحقق|التأكيد)",
    r"ورمز[ ](?:التحقق|التأكيد)",  # "and the code" (the conjunction is written joined)
    r"ओटीपी",
]
# "code" alone is an OTP only as "the code is 123456" (or "your code 123456"), never after these.
_NOT_OTP_CODE = (
    r"error|promo(?:tional)?|post|postal|zip|sort|area|country|dial(?:l?ing)?|discount|coupon|voucher"
    r"|referral|status|reason|product|bank|swift|bic|branch|tracking|source|qr|http|exit|response|mcc"
    r"|category|decline|declined|transit|routing|institution|merchant|terminal|transaction"
    r"|tax|gift|iso|currency|program|item|article|style|colou?r|booking|confirmation|reference|ref"
    r"|invite|invitation|activation|offer|region|language|airport|station|event|course|class|site"
    r"|store|shop|fund|isin|sic|naics|ean|upc|sku|hs|promotion|return|fault|bar|morse|dress|cheat"
)
_CODE_WORDS = [r"code", r"código", r"codigo", r"codice", r"kod"]
#: Malaysia's Transaction Authorisation Code and the Indonesian and Malay words for a one-time or
#: verification code: only digits follow them as the code ("TAC 5minit", "kode verifikasi 3kali"
#: are words), after "Anda/saya/nya" and "adalah/ialah" (is).
_MY_ID_OTP_WORDS = [
    # (a TAC has six digits: "TAC 2024" is something else)
    r"tac(?=[ ](?:anda|kamu|saya|awak|adalah|ialah)|[ ]{0,3}[:=]?[ ]{0,3}[0-9]{3}[ \-]?[0-9]{3}(?![0-9]))",
    r"otp[ ]?-?nya",
    r"tac[ ]?-?nya",
    r"kode[ ](?:otp|verifikasi|keamanan|tac)",
    r"kod[ ](?:otp|tac|pengesahan|keselamatan)",
]
_MY_ID_OTP_REST = (
    r"(?:[ ](?:anda|kamu|saya|awak|nya))?(?:[ ]{0,3}(?:adalah|ialah|is|:|=))?[ ]{0,3}"
    r"(?P<v>[0-9]{4,8}|[0-9]{3}[ \-][0-9]{3})(?![0-9]|[ \-][0-9])"
)
#: A user name's labels, and the name: a token with a letter in it ("dkowalski88", "priya.r.1990").
_USERNAME_WORDS = [
    r"user[ ]?name",
    r"user[ ]?id",
    r"log-?in[ ](?:id|name)",
    r"sign-?in[ ](?:id|name)",
    r"benutzer(?:name|kennung)",
    r"nom[ ]d['’]utilisateur",
    r"identifiant",
    r"usuario",
    r"nombre[ ]de[ ]usuario",
    r"nome[ ]de[ ]usu[áa]rio",
    r"nome[ ]utente",
    r"gebruikersnaam",
    r"nazwa[ ]u[żz]ytkownika",
    r"имя[ ]пользователя",
    r"логин",
    r"kullan[ıi]c[ıi][ ]ad[ıi]",
    r"ログインid",
    r"ユーザー(?:名|id)",
    r"用户名",
    r"用戶名",
    r"아이디",
    r"사용자[ ]?이름",
]
_USERNAME_VALUE = r"(?P<v>(?=[^\s]{0,63}[a-z])[a-z0-9](?:[a-z0-9._\-]|@(?=[a-z0-9])){2,63}+)(?![a-z0-9._\-@])"
#: ... a made-up one (a digit, a dot or an underscore in it), right after the label: "Login ID priya.r.1990".
_USERNAME_MADE_UP = (
    r"[ ]{1,3}(?P<v>(?=[^\s]{0,63}[a-z])(?=[^\s]{0,63}[0-9._])[a-z0-9](?:[a-z0-9._\-]|@(?=[a-z0-9])){2,63}+)"
    r"(?![a-z0-9._\-@])"
)
_ACCOUNT_SUFFIX = r"(?:[ ]?(?:no\.?|number|num\.?|nr\.?|#))?"
_ACCOUNT_WORDS = [
    r"bank[ ]account" + _ACCOUNT_SUFFIX,
    r"account" + _ACCOUNT_SUFFIX,
    r"acct\.?" + _ACCOUNT_SUFFIX,
    r"acc(?:[ ]?(?:no\.?|#))?",
    r"a/c" + _ACCOUNT_SUFFIX,
    r"número[ ]de[ ]cuenta",
    r"numero[ ]de[ ]cuenta",
    r"cuenta",
    r"numéro[ ]de[ ]compte",
    r"numero[ ]de[ ]compte",
    r"n°[ ]de[ ]compte",
    r"compte",
    r"konto(?:nummer|[ ]?nr\.?)?",
    r"kto\.?[ -]?nr\.?",
    r"numero[ ]di[ ]conto",
    r"conto(?:[ ]corrente)?",
    r"número[ ]da[ ]conta",
    r"numero[ ]da[ ]conta",
    r"conta(?:[ ]corrente)?",
    r"rekening(?:nummer)?",
    # Malay and Indonesian, with "my" and "is" (not "baki akaun", "saldo rekening": a balance)
    r"akaun(?<!(?:baki|saldo)[ ]akaun)[ ]saya(?:[ ](?:ialah|adalah))?",
    r"no\.?[ ]akaun(?<!(?:baki|saldo)[ ]no\.?[ ]akaun)(?:[ ]saya)?(?:[ ](?:ialah|adalah))?",
    r"nombor[ ]akaun(?:[ ]saya)?(?:[ ](?:ialah|adalah))?",
    r"nomor[ ]rekening(?:[ ]saya)?(?:[ ](?:adalah|ialah))?",
    r"rekening(?<!saldo[ ]rekening)[ ]saya(?:[ ](?:adalah|ialah))?",
    r"no\.?[ ]rek(?:ening)?\.?(?<!saldo[ ]no\.?[ ]rek(?:ening)?\.?)(?:[ ]saya)?",
    # Norwegian and Danish, inflected: "kontonummeret mitt er"
    r"kontonummer(?:et)?(?:[ ](?:mitt|mit|mitt[ ]er|mit[ ]er|er))",
    r"numer[ ](?:konta|rachunku)",
    r"rachunek",
    r"номер[ ]сч[её]та",
    r"сч[её]т(?:а)?",
    r"лицевой[ ]сч[её]т",
    r"账号",
    r"帳號",
    r"账户(?:号码|号)?",
    r"帐号",
    r"帐户",
    r"口座番号",
    r"계좌[ ]?번호",
    r"hesap[ ](?:no|numaras[ıi])",
    r"رقم[ ]الحساب",
    r"खाता[ ](?:संख्या|नंबर|नं\.?)",
]
_SORT_WORDS = [
    r"bank[ ]sort[ _-]?code",
    r"sort[ _-]?code",
    r"s/c",
    r"nsc",
    r"national[ ]sort[ ]code",
    # a query string's key beside an account's: "?acct=41827733&sort=254742"
    r"sort(?<=(?:acct|acc|account)[_a-z]{0,8}=[0-9]{6,10}&sort)(?==[0-9]{6}(?![0-9]))",
    r"sort(?==[0-9]{6}&(?:acct|acc|account)[_a-z]{0,8}=[0-9])",
]
#: Australia's BSB (bank-state-branch, 123-456) and the US routing (ABA) number: a sort code's role.
_BSB_WORDS = [r"bsb(?:[ ](?:no\.?|number|code))?"]
_BSB_VALUE = r"(?P<v>[0-9]{3}[ \-]?[0-9]{3})(?![0-9])"
_ROUTING_WORDS = [
    r"routing(?:[ ](?:no\.?|number|#|code))?",
    r"aba(?:[ ](?:no\.?|number|#|routing[ ]number))?",
    r"rtn",
    r"transit[ ](?:no\.?|number)",
]
_ROUTING_VALUE = r"(?P<v>[0-9]{9})(?![0-9])"
_SSN_WORDS = [
    r"ssn",
    r"ss#",
    r"social[ ]security(?:[ ](?:number|no\.?|#))?",
    r"soc\.?[ ]sec\.?(?:[ ]no\.?)?",
    r"social(?:[ ](?:number|no\.?|#))?",
]
_IBAN_WORDS = [r"iban"]
_ID_WORDS = [
    r"national[ ](?:id|identity|identification|insurance)(?:[ ](?:number|no\.?|card))?",
    r"ird(?:[ ](?:number|no\.?|num))?",  # New Zealand's tax number: any value after it, as above
    # The UK's Unique Taxpayer Reference, spelt out ("UTR" alone is also India's transfer reference)
    r"unique[ ]tax(?:payer)?[ ]reference",
    r"national[ ]number",  # Belgium's rijksregisternummer, in English
    r"ni[ ](?:number|no\.?)",  # the UK's National Insurance number, as customers name it
    r"nino",
    r"south[ ]african[ ]id(?:[ ](?:number|no\.?))?",
    r"id[ ](?:number|no\.?|card(?:[ ]number)?)",
    r"identity[ ](?:card[ ])?(?:number|no\.?)",
    r"identification[ ]number",
    r"personal[ ](?:id|identification|identity)(?:[ ]?(?:number|no\.?|code))?",
    r"dni",
    r"nie",
    r"nif",
    r"documento(?:[ ]de[ ]identidad|[ ]nacional)?",
    r"carte[ ]d'identit[ée]",
    r"numéro[ ]de[ ]sécurité[ ]sociale",
    r"numero[ ]de[ ]securite[ ]sociale",
    r"sécurité[ ]sociale",
    r"securite[ ]sociale",
    r"sécu",
    r"secu",
    r"nir",
    r"insee",
    r"steuer[- ]?id(?:entifikationsnummer)?",
    r"steueridentifikationsnummer",
    # "Steuer-IdNr.", "steuerliche Identifikationsnummer" (a PII probe's: the digits were read as a
    # phone number with the first group left)
    r"steuer[- ]?idnr\.?",
    r"steuerliche[ ]identifikationsnummer",
    r"idnr",
    r"personalausweis(?:nummer)?",
    r"codice[ ]fiscale",
    r"cpf",
    r"pesel",
    r"tc[ ]?kimlik(?:[ ]no|[ ]numaras[ıi])?",
    r"t\.c\.[ ]?kimlik(?:[ ]no|[ ]numaras[ıi])?",
    r"kimlik[ ](?:no|numaras[ıi])",
    r"bsn",
    r"burgerservicenummer",
    r"инн",
    r"снилс",
    r"паспорт",
    r"身份证(?:号码|号)?",
    r"身份證(?:號碼|號)?",
    r"居民身份证",
    r"マイナンバー",
    r"個人番号",
    r"주민(?:등록)?번호",
    r"aadhaar(?:[ ](?:number|no\.?|card))?",
    r"aadhar",
    r"आधार(?:[ ]संख्या|[ ]नंबर)?",
    r"ahv(?:-?(?:nr\.?|nummer))?",
    r"rijksregister(?:nummer)?",
    r"numéro[ ]national(?:[ ]belge)?",
    r"insz",
    r"rut",
    r"run",
    r"cnp",
    r"cod[ ]numeric[ ]personal",
    # (Finnish "on"/"oli": is/was, which the value would otherwise start with)
    r"henkilötunnus(?:[ ](?:on|oli))?",
    r"henkilotunnus(?:[ ](?:on|oli))?",
    r"hetu(?:[ ](?:on|oli))?",
    r"sin",
    r"social[ ]insurance(?:[ ](?:number|no\.?|#))?",
    r"nas",  # Quebec: numéro d'assurance sociale
    r"num[ée]ro[ ]d['’]assurance[ ]sociale",
    r"personnummer",
    r"personnr\.?",
    r"cpr(?:-?(?:nummer|nr\.?))?",
    r"fødselsnummer",
    r"fodselsnummer",
    r"avs",
    r"curp",
    r"rrn",
    r"resident[ ]registration[ ]number",
    r"ppsn?(?:[ ](?:no\.?|number))?",
    r"personal[ ]public[ ]service(?:[ ]number)?",
    r"tfn",
    r"tax[ ]file[ ](?:number|no\.?)",
    r"nric(?:[ ]?(?:/|or)[ ]?fin)?(?:[ ](?:no\.?|number))?",
    r"hkid(?:[ ](?:no\.?|number|card))?",
    r"hong[ ]kong[ ](?:id|identity)(?:[ ]card)?(?:[ ](?:no\.?|number))?",
    r"رقم[ ](?:الهوية(?:[ ]الوطنية)?|قومي)",
    r"الرقم[ ]القومي",
    # identity documents without a checksum python-stdnum knows
    r"passport(?:[ ](?:no\.?|number|#))?",
    r"pasaporte",
    r"passeport",
    r"reisepass(?:nummer)?",
    r"pass[- ]?(?:nummer|nr\.?)",
    r"passaporto",
    r"passaporte",
    r"护照(?:号码|号)?",
    r"パスポート(?:番号)?",
    r"여권(?:[ ]?번호)?",
    r"جواز[ ]السفر",
    r"पासपोर्ट",
    r"driv(?:er['’]?s?|ing)[ ]licen[cs]e(?:[ ](?:no\.?|number|#))?",
    r"dl(?:[ ]?#|[ ](?:no\.?|number))",
    r"dow[óo]d(?:[ ]osobisty)?",
    r"ausweis(?:nummer|[ ]?nr\.?)?",
    r"personalausweis(?:nummer|[ ]?nr\.?)?",
    r"identity[ ]card(?:[ ](?:no\.?|number))?",
    r"id[ ]card[ ](?:no\.?|number)",
    r"permis[ ]de[ ]conduire",
    r"führerschein(?:nummer)?",
    r"licencia[ ]de[ ]conducir",
    r"cédula(?:[ ]de[ ](?:ciudadan[íi]a|identidad))?",
    r"cedula(?:[ ]de[ ](?:ciudadan[íi]a|identidad))?",
    r"rfc",  # Mexico's taxpayer registry code (a person's holds the birth date)
    r"kad[ ]pengenalan(?:[ ]saya)?",  # Malaysia's MyKad, in Malay ("saya": my)
    r"mykad",
    r"no\.?[ ]kp",
    r"ic[ ](?:no\.?|number|num)",
    r"i/c[ ](?:no\.?|number|num)",
    r"henkilötunnu(?:kse(?:ni|si|nne|mme)|ksen)(?:[ ](?:on|oli))?",  # (inflected: "my ... code is")
    r"bvn",  # Nigeria's Bank Verification Number, and its National Identification Number
    r"nin",
    r"nik",  # Indonesia's population number, on the KTP
    r"ktp",
    r"teudat[ ]zehut",
    r"תעודת[ ]זהות",
    r"emirates[ ]id(?:[ ](?:no\.?|number))?",
    r"iqama(?:[ ](?:no\.?|number))?",
    r"رقم[ ]الإقامة",
    r"philsys(?:[ ](?:no\.?|number))?",
]
#: India's Permanent Account Number: after its label only a value of its shape counts ("pan" is a word).
_PAN_WORDS = [
    r"pan(?:[ ](?:no\.?|number|card(?:[ ](?:no\.?|number))?))?",
    r"permanent[ ]account[ ]number",
    r"पैन(?:[ ]?(?:नंबर|नम्बर|संख्या|कार्ड(?:[ ]?(?:का[ ])?(?:नंबर|नम्बर|संख्या))?))?",
]
_PAN_VALUE = r"(?P<v>[a-z]{5}[ ]?[0-9]{4}[ ]?[a-z])(?![0-9a-z])"
#: Singapore's Foreign Identification Number: after "FIN" (a word in French) only a value of its shape.
_FIN_WORDS = [r"fin(?:[ ](?:no\.?|number))?"]
_FIN_VALUE = r"(?P<v>[stfgm][0-9]{7}[a-z])(?![0-9a-z])"
_DOB_WORDS = [
    r"dob",
    r"d\.o\.b\.?",
    r"date[ ]of[ ]birth",
    r"birth[ ]?date",
    r"born(?:[ ]on)?",
    r"birthday",
    r"bday",
    r"b-day",
    r"b[ ]day",
    r"fecha[ ]de[ ]nacimiento",
    r"f\.[ ]?nac\.?",
    r"nacid[oa][ ]el",
    r"nac[íi][ ]el",
    r"nasci(?:do|da)?[ ]em",
    r"nasci[ ]a",
    r"date[ ]de[ ]naissance",
    r"née?[ ]le",
    r"né\(e\)[ ]le",
    r"geburtsdatum",
    r"geb\.(?:[ ]am)?",
    r"geboren(?:[ ]am|[ ]op)?",
    r"data[ ]di[ ]nascita",
    r"nat[oa][ ]il",
    r"data[ ]de[ ]nascimento",
    r"geboortedatum",
    r"data[ ]urodzenia",
    r"urodzon[ya](?:[ ]dnia)?",
    r"дата[ ]рождения",
    r"родил(?:ся|ась)",
    r"д\.[ ]?р\.",
    r"出生日期",
    r"出生年月日",
    r"生日",
    r"出生于",
    r"生年月日",
    r"誕生日",
    r"생년월일",
    r"생일",
    r"doğum[ ]tarihi(?:m|n|niz)?",
    r"dogum[ ]tarihi(?:m|n|niz)?",
    r"janm[ ]?(?:tithi|tarikh|tareekh|din)",
    r"تاريخ[ ]الميلاد",
    r"जन्म[ ]?(?:तिथि|तारीख)",
    r"tanggal[ ]lahir(?:[ ]saya)?(?:[ ](?:adalah|ialah))?",  # Indonesian
    r"tgl\.?[ ]lahir(?:[ ]saya)?",
    r"tarikh[ ]lahir(?:[ ]saya)?(?:[ ](?:adalah|ialah))?",  # Malay
    r"ngày[ ]sinh",  # Vietnamese
    r"วันเกิด",  # Thai
    r"födelsedatum(?:[ ]är)?",
    r"fødselsdato(?:en)?(?:[ ]er)?",
    r"syntymäaika(?:ni)?(?:[ ]on)?",
    r"תאריך[ ]ה?לידה(?:[ ]שלי)?",
]
#: A parcel's tracking number's labels (a carrier's name may come between: :data:`_LABEL_KINDS`).
_TRACKING_WORDS = [
    r"tracking",
    r"awb",
    r"air[ ]?waybill",
    r"consignment",
    r"seguimiento",
    r"spedizione",
    r"suivi(?:[ ]colis)?",
    r"rastreamento",
    r"rastreio",
    r"sendung",
    r"paczka",
    r"przesyłka",
    r"kargo(?:[ ]takip)?",
    r"takip",
    r"pakket",
    r"трек(?:-?номер)?",
]
_REF_WORDS = [
    r"order",
    r"código[ ]de[ ]barras",
    r"codigo[ ]de[ ]barras",
    r"barcode",
    r"gtin",
    # India's Unique Transaction Reference of a UPI/IMPS payment (12 digits; the UK's UTR, a
    # taxpayer's 10 digits, is personal: :data:`_UTR`)
    r"utr(?=(?:[ ](?:no\.?|number))?[ ]?[:#]?[ ]?[0-9]{12}(?![0-9]))",
    r"order[_\-]?(?:id|no|number|ref)",
    r"kenmerk",
    r"refer[êe]ncia(?:[ ]mb)?",
    # a card terminal's or a merchant's id, a card scheme's acquirer reference number: the business's
    # ("terminal ID 10472839", "TID 21849377", "ARN: ...")
    r"terminal(?:[ ](?:id|no\.?|number))?",
    r"tid",
    r"merchant[ ](?:id|no\.?|number)",
    r"arn",
    r"acquirer[ ]reference(?:[ ]number)?",
    r"reservation(?:[ ](?:no\.?|number))?",
    r"réservation",
    r"ordernummer",
    r"bestelnummer",
    r"factuurnummer",
    r"referentie",
    r"referencia[ ]de[ ]operaci[óo]n",
    r"operaci[óo]n",
    r"operazione(?:[ ]n\.?)?",
    r"номер[ ]операции",
    r"операци[ияю]",
    r"protocolo[ ]de[ ]atendimento",
    r"terminale",
    r"승인[ ]?번호",
    r"운송장(?:[ ]?번호)?",
    r"लेनदेन[ ](?:संख्या|आईडी)",
    r"ref(?:erence)?\.?",
    r"réf\.?",
    # a business's or a security's identifier, never a person's: a UK company number, Australia's
    # ABN and ACN, CUSIP, SEDOL
    r"company[ ](?:registration[ ])?(?:number|no\.?)",
    r"abn",
    r"acn",
    # a business's registration numbers, each only before a number of its own length: France's
    # SIRET (14) and SIREN (9), Italy's partita IVA (11), the Netherlands' KvK (8) and btw number
    # (NL + 9 + B + 2; "btw" alone is "by the way"), an employer's Polish NIP (10; "NIP" alone is
    # also a card's PIN)
    r"siret(?=[ ]{0,3}[:#]?[ ]{0,3}[0-9]{14}(?![0-9]))",
    r"siren(?=[ ]{0,3}[:#]?[ ]{0,3}[0-9]{9}(?![0-9]))",
    r"p\.[ ]?iva(?=[^0-9\n]{0,24}[0-9]{11}(?![0-9]))",
    r"partita[ ]iva(?=[^0-9\n]{0,24}[0-9]{11}(?![0-9]))",
    r"kvk(?:-?nummer)?(?=[^0-9\n]{0,24}[0-9]{8}(?![0-9]))",
    r"btw(?:-?nummer|[ ]nummer)(?=[ ]{0,3}[:#]?[ ]{0,3}nl[0-9]{9}b[0-9]{2})",
    r"nip[ ](?:pracodawcy|firmy|sprzedawcy|sklepu)"
    r"(?=[ ]{0,3}[:#]?[ ]{0,3}[0-9]{3}-?[0-9]{3}-?[0-9]{2}-?[0-9]{2}(?![0-9]))",
    r"cusip",
    r"sedol",
    r"振込番号",
    r"取引番号",
    # a rental agreement's, a certificate's (an energy rating's), a meter point's number (Ireland's
    # MPRN, Britain's MPAN)
    r"rental[ ]agreement(?:[ ](?:no\.?|number))?",
    r"cert(?:ificate)?[ ](?:no\.?|number)",
    r"mprn(?:[ ](?:is|was))?",
    r"mpan(?:[ ](?:is|was))?",
    r"meter[ ](?:point[ ])?(?:no\.?|number|ref(?:erence)?)",
    # a direct debit's mandate reference and its creditor's id (SEPA)
    r"mandatsreferenz",
    r"mandate[ ]ref(?:erence)?",
    r"gläubiger-?id",
    r"batch(?:[ ](?:no\.?|number))?",
    r"serial(?:[ ](?:no\.?|number))?",
    # "conf# 285526144", "conf no. 4417..." (a confirmation's number, abbreviated)
    r"conf\.?(?=[ ]?(?:#|no\.?|nr\.?|number))",
    # Nordic payment references: Sweden's OCR number, Norway's KID-nummer, and the words for a
    # reference, an invoice or a loan number
    r"ocr(?:-?(?:nummer|nr\.?))?",
    # (only as "KID-nummer", "KID-nr": "kid" alone is a child, "my kid 07911123456")
    r"kid-?(?:nummer|nr\.?)",
    r"referens(?:nummer)?",
    r"referanse(?:nummer)?",
    r"referencenummer",
    r"fakturanummer",
    r"fakturanr\.?",
    r"viitenumero",
    r"viite",
    r"laskunumero",
    r"lainanumero",
    r"lånenummer",
    r"lånnummer",
    # Indonesian and Malay: a transaction's, a reference's number
    r"transaksi",
    r"rujukan",
    r"referensi",
    r"ticket",
    r"invoice",
    r"inv\.?",
    r"transaction",
    r"txn",
    # a NIBSS (Nigeria) transfer's session id: "Session ID 100004250311120455661020118"
    r"session[ ]id(?=[ ]{0,3}[:#]?[ ]{0,3}[0-9]{20,36}(?![0-9]))",  # (30 digits: never a card)
    r"trx",
    r"tx",
    r"case(?:(?<!in[ ]case)|(?![ ]?[:,]))",  # not "just in case: <card>" ("in case no. 4821..." is one)
    r"claim",
    r"booking",
    r"confirmation",
    r"tracking",
    r"receipt",
    r"request",
    r"complaint",
    r"dispute",
    r"shipment",
    r"parcel",
    r"application",
    r"payment",
    r"sku",
    r"item(?:[ ](?:no\.?|number|#|code))?",
    r"product[ ](?:code|id|number|no\.?)",
    r"article(?:[ ](?:no\.?|number))?",
    r"artikel(?:nummer)?",
    r"model(?:[ ](?:no\.?|number))?",
    r"modelo",
    r"part[ ](?:no\.?|number|#)",
    r"catalog(?:ue)?[ ](?:no\.?|number)",
    r"purchase[ ]order",
    r"po",
    r"pedido",
    r"referencia",
    r"factura",
    r"reclamaci[óo]n",
    r"commande",
    r"facture",
    r"référence",
    r"dossier",
    r"bestellung",
    r"bestellnummer",
    r"rechnung(?:snummer)?",
    r"referenz(?:nummer)?",
    r"vorgang(?:snummer)?",
    r"auftrag(?:snummer)?",
    r"aktenzeichen",
    r"ordine",
    r"fattura",
    r"pratica",
    r"riferimento",
    r"encomenda",
    r"fatura",
    r"protocolo",
    r"bestelling",
    r"factuur",
    r"zamówienie",
    r"zamowienie",
    r"faktura",
    r"zgłoszenie",
    r"zgloszenie",
    r"sipariş",
    r"siparis",
    r"заказ",
    r"заявка",
    r"обращение",
    r"订单(?:号|编号)?",
    r"訂單(?:號)?",
    r"单号",
    r"工单",
    r"流水号",
    r"交易号",
    r"注文(?:番号)?",
    r"予約(?:番号)?",
    r"주문(?:번호)?",
    r"طلب",
    r"الطلب",
    r"الفاتورة",
    r"المعاملة",
    r"ऑर्डर",
    # inflected forms: заказа, заявки, zamówienia, faktury, ordini...
    r"заказ(?:а|у|ом|е|ы)?",
    r"заявк[аиуе]",
    r"обращени[еяю]",
    r"транзакци[ияю]",
    r"сч[её]т[ a-]?фактур[аы]",
    r"zam[óo]wieni[aeu]",
    r"faktur[aey]",
    r"zg[łl]oszeni[aeu]",
    r"transakcj[ia]",
    r"ordin[ei]",
    r"pedidos?",
    r"commandes?",
    r"bestellungen",
    # German compounds ending in -nummer / -nr.: Transaktionsnummer, Buchungs-Nr.
    *(
        stem + r"[ \-]?(?:nummer|nr\.?)"
        for stem in [
            "transaktions",
            "bestell",
            "rechnungs",
            "auftrags",
            "vorgangs",
            "referenz",
            "buchungs",
            "liefer",
            "sendungs",
            "tracking",
            "ticket",
            "fall",
            "antrags",
            "storno",
            "beleg",
            "zahlungs",
            "überweisungs",
            "ueberweisungs",
            "reklamations",
            "kunden",
            "vertrags",
            "schaden",
            "versand",
            "paket",
            "transaktion",
        ]
    ),
    # builds and releases: "build 2024.03.1187"
    r"build",
    r"release",
]

_CONNECT_WORD = (
    r"(?:no\.?|nr\.?|number|num\.?|n[º°o]\.?|is|was|are|es|era|est|était|ist(?:[ ]doch)?|war|lautet|è|é"
    r"|jest|to|это|будет|será|sera|wird|will[ ]be|be|of|de|di|da|del|do|c['’]est|foi|fue"
    r"|الخاص[ ]بك|الخاصة[ ]بك|普通預金|普通|当座)(?![\p{L}'’])"
)
# Signs between a label and its value, JSON and Markdown included: {"cvv":"914"}, | dob | 14/03/1985 |,
# "cvv (318)", "my pin's 7391".
_CONNECT_SYM = r"(?:['’]s(?![\p{L}])|[:=#：\-–—\"'“”„«»|(>→?]|\.{2,40}|是|为|為|は|が|는|은|이|가|هو|هي)"
# A customer unsure of the value: "my pin, i think its 0007", "pin maybe 4821".
_I_THINK = r"i[ ](?:think|believe|guess|reckon)"
_IT_IS = r"(?:it['’]?s|its|it[ ](?:is|was))"
# The customer asks back, then gives it: "do you need the cvc? its 658", "my pin? fine, it's 7319".
_ASKED_IT_IS = r"\?[ ]{0,3}(?:(?:ok|okay|fine|sure|yes|yeah|well|right)[ ]?[,.!]?[ ]{0,3})?" + _IT_IS
_HEDGE = (
    # "my pin, i think its either 2580 or 1379": both are read (the second as a correction's)
    r"(?:,?[ ]{0,3}" + _I_THINK + r"[ ]{1,3}" + _IT_IS + r"(?:[ ]either)?|" + _ASKED_IT_IS + r")(?![\p{L}'’])"
)
#: A value said after its label and a bare "its" / "it is", without "I think" (a PII probe's:
#: "forgot my pin its 4821 i think, can i reset it", "pin it is 4821"): only digits that end their
#: clause, and not a year ("my pin it is 2026 and you still post pins?", "the code, it was 2000
#: euros", "the pin it is 2000 withdrawals per day": a review of the first version).
_BARE_IT_IS = r",?[ ]{1,3}(?:it['’]?s|its|it[ ](?:is|was))[ ]{1,3}(?!(?:19[0-9]{2}|20[0-3][0-9])(?![0-9]))"
_CLAUSE_ENDS = (
    r"(?![0-9]|[.,][0-9])(?=[ ]*(?:[.,;!?)]|$|(?:but|and|or|maybe|i|if|so|can|could|please|pls|thanks"
    r"|right|ok|okay)(?![\p{L}])))"
)
_FILL = rf"(?:[ ]{{0,3}}(?:{_CONNECT_WORD}|{_CONNECT_SYM}|{_HEDGE})){{0,3}}[ ]{{0,3}}"
_FILL_REQUIRED = (
    rf"[ ]{{0,3}}(?:{_CONNECT_WORD}|{_CONNECT_SYM})(?:[ ]{{0,3}}(?:{_CONNECT_WORD}|{_CONNECT_SYM})){{0,2}}"
    r"[ ]{0,3}"
)
# Which card, by its last four digits: "card ending 3012", "card ending in ****3012", "card (ending
# 3012)", "card number ending with 3012", "card with the last 4 digits 3012", and "card 3012" or
# "card ****3012" right before "is" / ":" / "=". The last four are not personal data on their own and
# stay; the value after them is the secret's.
_CARD_ENDING = (
    r"(?:(?:[ ](?:number|no\.?))?"
    r"(?:[ ]?\(?[ ]?(?:that[ ])?(?:ending|ends|ended)(?:[ ](?:in|with))?"
    r"|[ ](?:with[ ])?(?:the[ ])?last[ ](?:four|4)(?:[ ]digits)?(?:[ ](?:of|being))?)"
    r"[ ]{0,3}[:#]?[ ]{0,3}(?:[*x•·.]{1,16}[ ]?)?[0-9]{4}(?![0-9])\)?"
    r"|[ ](?:[*x•·.]{1,16}[ ]?)?[0-9]{4}(?![0-9])(?=[ ]{0,3}(?:is|was|[:=])(?![\p{L}])))"
)
# "the pin of my card is", "el pin de mi tarjeta es", "le code de ma carte", "the pin for card ending
# 3012 is"...
_OF_CARD = (
    r"(?:[ ](?:of|for|on|to|de|del|du|di|della|do|da|für|von|от|для|на)[ ]"
    r"(?:(?:my|the|your|this|mi|tu|la|ma|mon|ta|mia|tua|meu|minha|meiner|meine|der|моей|моего|этой)[ ])?"
    r"(?:(?:bank|debit|credit|visa|amex|new)[ ])?"
    r"(?:card|account|tarjeta|cuenta|carte|compte|karte|konto|carta|conto|cartão|cartao|conta|карты|сч[её]та"
    r"|kaart|karty|bancomat|atm|cash[ ]card|cajero|geldautomat|интернет-банка|онлайн-банка|приложения"
    # the service it opens: "the password for my app is", "password for online banking:", "la
    # contraseña de mi app es", "le mot de passe de mon appli est"
    r"|(?:online|internet|mobile|phone|telephone|web)[ ]banking|(?:banking[ ])?app(?:lication)?|appli"
    r"|internet"
    r"|aplicaci[óo]n|login|log-?in|website|portal)"
    rf"(?:{_CARD_ENDING})?)?"
)
# "new pin should be 1357", "pin changed to 4921", "set my pin as 4921": a PIN being set or changed.
_PIN_CHANGE = (
    r"(?:[ ](?:should|must|shall|would|needs[ ]to|has[ ]to|is[ ]going[ ]to)[ ]be"
    r"|[ ](?:(?:was|has[ ]been|is[ ]being|got)[ ])?(?:changed|set|reset|updated|changes|changing)"
    r"(?=[ ](?:to|as)(?![\p{L}]))"
    r"|[ ]as(?![\p{L}])"
    # "change my PIN from 1357 to 8642" (the new one follows: :data:`_CONTINUED`)
    r"|(?:[ ](?:(?:was|has[ ]been|got)[ ])?(?:changed|went|moved|switched|changes))?[ ]from"
    r"(?=[ ]{1,3}(?!(?:19|20)[0-9]{2}(?![0-9]))[0-9])"  # (not a year: "pin from 2019 to 2024")
    # "the new pin I chose is 7788"
    r"|[ ](?:i|we)[ ](?:chose|picked|set|want(?:ed)?|use|used|have|got)(?=[ ](?:is|was|as|to)(?![\p{L}])))?"
)
# "security code on the back (of my card) is", "CVV (on the back)"
_ON_BACK = (
    r"(?:[ ]\(?(?:on|at)[ ](?:the[ ])?(?:back|front|reverse)(?:[ ]of[ ](?:the|my|your)(?:[ ]card)?)?\)?)?"
)
# Between a password label and the password: a word ("is", "was"...) or a sign (":", "=", 是...). After a
# word only a token that cannot be an ordinary word counts ("my passcode was denied" is a sentence).
_PASSWORD_FILL = (
    # what it is for, before "is": "maiden name for the security question is", "security answer for
    # 'first school' is", "password for online banking was"
    r"(?:[ ]{1,3}for[ ][^.!?\n:=]{1,40}?(?=[ ]{1,3}(?:is|was)[ ]))?"
    r"[ ]{0,3}[\"'”]?[ ]{0,3}(?:(?P<sign>[:=：\-–—]|是|为|為|は|が|는|은|이|가)"
    r"|(?:is|was|are|es|era|est|était|ist|war|lautet|è|é|jest|это|был|была|será|sera|wird|will[ ]be|be"
    r"|hat|tiene|c['’]est|(?:which|that)[ ](?:is|was))"
    r"(?![\p{L}'’])(?:[ ]{0,3}(?P<sign>[:=：]))?"
    # "is" said short, right after the label: "my password's Hunter2", "memorable word's rosebud"
    # (or a possessive: "the password's requirements": :func:`_label_at` tells them apart)
    r"|(?<=\p{L})(?P<apos>['’]s)(?![\p{L}'’])"
    r"|" + _ASKED_IT_IS + r"(?![\p{L}'’])"
    r")[ ]{0,3}"
    # "my password is i think hunter2"
    r"(?:" + _I_THINK + r"(?:[ ]{1,3}" + _IT_IS + r")?[ ]{1,3})?"
)
#: A software version or a length of time, not a password: "v2.3.14b", "ios17.2.1", "android14",
#: "10mins", "2hrs" (read on the lower-cased text).
_VERSION_OR_TIME = (
    r"(?:(?:v|ios|android|version)?[0-9]+(?:\.[0-9a-z]+)*[a-z]?"
    r"|[0-9]+(?:mins?|minutes?|hrs?|hours?|days?|secs?|seconds?|am|pm|st|nd|rd|th|gb|mb|kb))"
    r"(?=[\s,.;:!?)]|$)"
)

_DET_BEFORE = (
    r"(?<=(?<![\p{L}])(?:your|my|ur|the|this|tu|su|votre|ton|dein|ihr|il[ ]tuo|seu|sua|uw|jouw|ваш)[ ])"
)

# Ordinary words after "password is": the sentence is about the password, not the password itself.
_ORDINARY = frozenset(
    """
    not wrong incorrect invalid expired locked blocked reset changed working the my your too still a an
    shorter longer over under greater less more stronger weaker need needs doesn't does didn't don't
    being also now same correct right set required case different weak strong long short missing lost
    forgotten forgot mandatory compromised hacked stolen updated saved stored empty new old sent shown
    needed valid accepted rejected refused disabled enabled active in on for what that this it his her
    their our no ok okay fine good bad secure safe known unknown ready asked and or but so just only
    definitely probably exactly very really always never ever please here there mine yours one
    password passcode pin code blank case-sensitive outdated temporary easy hard simple complex
    weird strange similar unique obvious common personal private important great better worse usual
    normal random default there's isn't wasn't i think believe guess reckon maybe probably perhaps
    es est ist nicht falsch gesperrt abgelaufen pas oublié bloqué expiré incorrecto incorrecta
    bloqueado bloqueada caducado caducada olvidado olvidada mi tu su el la le les der die das mein meine
    non não nao errado errada sbagliato sbagliata bloccato scaduto niet fout geblokkeerd nie błędne
    zablokowane не неверный неправильный забыл забыла заблокирован истёк истек yanlış hatalı unuttum
    değil
    been gone got gotten stopped started become became
    """.split()  # noqa: SIM905 - a word list reads better as words
)
# A quoted password may hold spaces ("correct horse battery staple"); the quotes are not part of it.
_QUOTED = r"\"[^\"\n]{1,64}\"|“[^”\n]{1,64}”|'[^'\n]{1,64}'"
# After a memorable word, security answer... label: the value is the secret unless it is a state
# (:func:`_secret_word_state`). One token after a *word* label; after an answer, a name or a phrase,
# up to three more words of letters, up to a word that goes on with the sentence ("smith and ...") or
# names another secret ("rex pin 4921": that label is read too, see :func:`_label_at`), or a line break.
_SECRET_WORD_VALUE = rf"(?P<v>{_QUOTED}|[^\s\[]\S{{0,63}}+)"
_SENTENCE_GOES_ON = """
    and but or so because cos coz since as which who that when while if though although yet then please
    pls plz thanks thank thx i i'm im i've ive it it's its is was are were has have had can could would
    will should do does did don't dont doesn't didn't can't cant cannot won't wont isn't wasn't not no
    for to from with at on in by the my your a an also now still ok okay yes yeah lol how what why where
    again anymore already soon today yesterday tomorrow tonight after before until till every enough
    pin cvv cvc otp code password passcode pwd pass dob date born birthday account acct sort iban card
    phone mobile tel email e-mail ssn memorable security secret mother's mothers maiden passphrase
    y e o pero porque pues et mais ou donc parce und aber oder weil denn ich je ma ne nicht mas não non
    perché en maar niet nie ve ama и но а или не что это я
    """.split()  # noqa: SIM905 - a word list reads better as words


def _more_words(word: str, before: str, count: int) -> str:
    """Up to ``count`` more words after a secret's first token (which ends in a character of
    ``before``): each after one space, matched by ``word`` (bounded), never a word that goes on with
    the sentence (:data:`_SENTENCE_GOES_ON`: "smith and ...", "blue sky but ..."), and ending at a
    space, a punctuation mark or the end (the next word is not read past a comma: the clause is over)."""
    goes_on = "|".join(sorted((regex.escape(w) for w in _SENTENCE_GOES_ON), key=len, reverse=True))
    return (
        rf"(?:(?<={before})[ ](?!(?:{goes_on})(?![\p{{L}}'’\-])){word}"
        rf"(?=[\s.,;:!?)\]\"”']|$)){{0,{count}}}"
    )


_SECRET_PHRASE_VALUE = (
    rf"(?P<v>{_QUOTED}|[^\s\[]\S{{0,63}}+" + _more_words(r"[\p{L}\p{M}'’\-]{1,32}+", r"[\p{L}\p{M}]", 3) + ")"
)
#: A password of several words ("blue sky", "correct horse battery staple"): after its first token,
#: up to five more words (six in all) of at most 32 characters each, starting with a letter or a
#: digit; the whole is cut to :data:`_PASSPHRASE_MAX` characters and at a line break
#: (:func:`_passphrase_end`).
_PASSWORD_VALUE = (
    rf"(?P<v>{_QUOTED}|[^\s\[]\S{{0,63}}+"
    + _more_words(r"[\p{L}\p{M}\p{N}][^\s\[]{0,31}+", r"[\p{L}\p{M}\p{N}]", 5)
    + ")"
)
#: The first digit group after a CVV or PIN label; :func:`_secret_digits` looks at the groups after it.
_DIGITS_VALUE = r"(?<![0-9])(?P<v>[0-9]{1,19}+)(?![0-9])"
_OTP_VALUE = (
    # six digits in two or three groups, as banks' texts print them ("804 117", "77 31 58")
    r"(?<![0-9])(?P<v>[0-9]{3}[ \-][0-9]{3}(?![ \-]?[0-9])|[0-9]{2}[ ][0-9]{2}[ ][0-9]{2}(?![ \-]?[0-9])"
    r"|[0-9]{1,19}+(?![0-9a-z])"
    r"|(?=[a-z\-]{0,9}[0-9])[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){3,9}+(?![a-z0-9]))"
)
# Up to 20 characters of digit groups, or, when more groups follow, a card's four or five after the
# account's ("account number 1234 5678 4111 1111 1111 1111": the value read whole, split below).
_GROUPED_VALUE = (
    # (Norway's account number as printed, 4.2.5: "9710.87.74839")
    r"(?P<v>[0-9]{4}\.[0-9]{2}\.[0-9]{5}(?![0-9.])"
    r"|[0-9](?:[0-9]|[ \-](?=[0-9])){5,19}+(?![0-9])"
    r"|[0-9]{1,12}(?:[ \-][0-9]{1,12}){0,3}[ \-](?:[0-9]{13,19}|[0-9]{4}(?:[ \-][0-9]{1,6}){3,4})(?![0-9]))"
)
_SORT_VALUE = r"(?P<v>[0-9]{2}(?P<sep>[ ]?[\-./][ ]?|[ ]?)[0-9]{2}(?P=sep)[0-9]{2})(?![0-9])"
#: After "sc": a sort code in pairs, or six digits with an account number's label right after them
#: ("sc 404784 acc 71234567"; "SC 123456" alone may be anything).
_SORT_VALUE_APART = (
    r"(?P<v>[0-9]{2}(?P<sep>[ \-])[0-9]{2}(?P=sep)[0-9]{2}(?![0-9])"
    r"|[0-9]{6}(?=[ ]{0,2}[,;/]?[ ]{1,3}(?:acc|a/c|acct|account)(?![a-z])))"
)
_SSN_VALUE = r"(?P<v>[0-9]{3}(?P<sep>[ \-]?)[0-9]{2}(?P=sep)[0-9]{4})(?![0-9])"
_ID_VALUE = r"(?P<v>[0-9a-z](?:[0-9a-z]|[ .\-/](?=[0-9a-z])){5,29}+(?:[ ]?(?:\([0-9a-z]\)|\[[0-9a-z]\]))?)"
_IBAN_VALUE = r"(?P<v>[a-z]{2}[0-9]{2}(?:[ .\-]?[a-z0-9]){10,30}+)"
# A value never starts with a word of the sentence: in "the payment was 4111 1111 1111 1111" the
# number is not the payment's reference.
_REF_VALUE = (
    r"#?(?!(?:is|was|are|were|has|had|will|to|for|of|on|in|at|the|an?|and|but|with|from|by|my|your"
    r"|you|u|i|we|they|she|he"
    # Indonesian and Malay ("transaksi ke 0812...": to whom, not the transaction's number)
    r"|ke|dari|saya|untuk|di|yang|dan|ini|itu|anda|kamu|oleh|pada|kepada)"
    r"(?![a-z0-9]))"
    r"(?P<v>(?=[a-z0-9/_.\- ]{0,40}[0-9])[a-z0-9](?:[a-z0-9]|[\-/_.](?=[a-z0-9])|[ ](?=[0-9]{2})){2,40}+)"
)
_MONTH_WORD = r"[\p{L}\p{M}]{3,12}\.?"
_DATE_VALUE = (
    r"(?P<v>"
    r"[0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}"
    r"|[0-9]{1,2}[-/. ][0-9]{1,2}[-/. ][0-9]{2,4}"
    # spaced round its signs, as a form copied from a PDF: "14 / 02 / 1976"
    r"|[0-9]{1,2}[ ]{1,2}[-/.][ ]{1,2}[0-9]{1,2}[ ]{1,2}[-/.][ ]{1,2}[0-9]{2,4}"
    r"|[0-9]{1,2}(?:st|nd|rd|th|er|º|ª|o|\.)?(?:[ ]?(?:de[ ]|of[ ])?|[-/.])"
    + _MONTH_WORD
    + r"(?:,?(?:[ ]de[ ]|[ ]del[ ]|[ ])|[-/.])(?:[0-9]{4}|[0-9]{2})"
    r"|" + _MONTH_WORD + r"[ ][0-9]{1,2}(?:st|nd|rd|th)?,?[ ][0-9]{4}"
    r"|[0-9]{4}[ ]?年[ ]?[0-9]{1,2}[ ]?月[ ]?[0-9]{1,2}[ ]?[日号]?"
    r"|[0-9]{4}[ ]?년[ ]?[0-9]{1,2}[ ]?월[ ]?[0-9]{1,2}[ ]?일"
    # a Japanese era's year: "昭和63年4月2日" (Showa 63, 1988)
    r"|(?:昭和|平成|令和|大正)[ ]?(?:[0-9]{1,2}|元)[ ]?年[ ]?[0-9]{1,2}[ ]?月[ ]?[0-9]{1,2}[ ]?日"
    r"|[0-9]{8}"
    r")(?![0-9])"
)


def _head(pattern: str) -> str:
    """The literal characters a label pattern starts with ("mot de passe" for ``mot[ ]de[ ]passe``)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("[ ]", i):
            ch, width = " ", 3
        elif pattern[i] == "\\" and i + 1 < len(pattern) and not pattern[i + 1].isalnum():
            ch, width = pattern[i + 1], 2
        elif pattern[i] in "[](){}?*+|.^$\\":
            break
        else:
            ch, width = pattern[i], 1
        if pattern[i + width : i + width + 1] in ("?", "*", "{"):
            break
        out.append(ch)
        i += width
    return "".join(out)


#: What a value is for, between its label and "is": "OTP for the PayLah top up is", "IBAN for the
#: transfer from Switzerland is" (at most 40 characters, in one sentence).
_FOR_WHAT = r"[ ]{1,3}for[ ][^.!?\n:=]{1,40}?[ ]{1,3}(?:is|was)[ ]{1,3}:?[ ]{0,3}"
#: A bank's text message naming what a one-time code is for, in its language: "Ihre mTAN für die
#: Überweisung über 1.250,00 EUR an M. Schulz lautet: 604318", "il codice OTP per autorizzare il
#: bonifico di 2.500,00 EUR è 718204" (at most 64 characters, an amount's or an initial's dot in them).
_FOR_WHAT_SMS = (
    r"[ ]{1,3}(?:for|für|fur|pour|per|para|voor|dla|для|om)[ ]"
    r"(?:[^.!?\n:=]|(?<=[0-9])[.,](?=[0-9])|(?<=(?<![\p{L}])\p{L})\.(?=[ ])"
    r"|(?<=(?<![\p{L}])\p{L}{1,3})\.(?=[0-9])|(?<=(?<![\p{L}])\p{L}{1,4})\.(?=[ ])){1,64}?"
    # what a bank's code is for: a payment, a transfer, a login (not a discount or an error)
    r"(?<=(?:pay|pag|paie|pago|betal|zahl|trans|überw|uberw|bonif|txn|purchas|compra|achat|kauf|login"
    r"|log-in|sign|autori|перев|плат|оплат|przelew|płat|acc|konto|compte|cuenta|conta)[^!?\n:=]{0,60})"
    r"[ ]{1,3}(?:is|was|ist|lautet|lauten|est|è|es|é|jest|to|это|—|–|-)(?:[ ]{0,3}:)?[ ]{0,3}"
)
#: What the customer did with it, between its label and "is", in Portuguese, Spanish, French and
#: Italian: "a senha que cadastrei é", "el pin que me dieron es", "le code que j'ai reçu est".
_REL_CLAUSE_IS = (
    r"[ ]{1,3}(?:que|qui|che)[ ][^.!?\n:=0-9]{1,30}?[ ]{1,3}(?:é|es|est|è|era|était|foi|fue)"
    r"[ ]{1,3}:?[ ]{0,3}"
)
#: A PIN the customer believes it was, said after its label in the same or the next sentence: "card
#: blocked after wrong pin, I thought it was 8630", "Forgot MPIN ..., old one was 973658", "PIN
#: bloccato ... creo que era 2096", "falscher PIN. Ich dachte, es wäre 1222". Not a year, an amount,
#: a time or a count ("it was 1500 pounds", "it was 2019").
_PIN_THOUGHT = (
    r"[^!?\n0-9]{0,60}?[ ,](?:i[ ]thought[ ]it[ ]was|i[ ]think[ ]it['’]?s|it[ ]was|old[ ]one[ ]was"
    r"|mine[ ]is|creo[ ]que[ ]era|pensé[ ]que[ ]era|es[ ]wäre|es[ ]war|c['’]était|je[ ]crois[ ]que[ ]c['’]est"
    r"|pensavo[ ]fosse|achei[ ]que[ ]era)(?:[ ](?:maybe|probably|peut-être|vielleicht|quizás|forse))?[ ]{1,3}"
    r"(?!(?:19[0-9]{2}|20[0-3][0-9])(?![0-9]))"
    r"(?<![0-9])(?P<v>[0-9]{4,6})(?![0-9]|[.,][0-9])"
    # the digits end their clause ("it was 8630 but maybe", "creo que era 2096 o algo así"), not "it
    # was 2300 CHF", "it was 2145 when it happened", "it was 4200 series" (a reviewer's findings)
    r"(?=[ ]*(?:[.,;!?)]|$|(?:but|and|or|maybe|if|so|pero|o|y|aber|oder|mais|ou|et|ma|mas|en|of)(?![\p{L}])))"
)
#: Who gave or keeps the value, between its label and "is": "her pin she wrote on a post-it is 1940",
#: "the code that they sent me was" (at most 30 characters, no digit, in one sentence).
_CLAUSE_IS = (
    r"[ ]{1,3}(?:(?:that|which)[ ])?(?:she|he|i|they|we|you|u|the[ ]bank)[ ][^.!?\n:=0-9]{1,30}?"
    r"[ ]{1,3}(?:is|was)[ ]{1,3}:?[ ]{0,3}"
)
# "the code they texted was 4829", "the code you sent me is"
_CODE_CLAUSE = (
    r"(?:[ ](?:they|you|u|the[ ]bank|it|i|we|that[ ]i|that[ ]you)[ ]"
    r"(?:texted|sent|gave|emailed|got|received|just[ ](?:sent|texted|got))(?:[ ](?:me|us|you))?"
    # "el código que me llegó por SMS es", "le code que j'ai reçu est", "il codice che mi è arrivato è"
    r"|[ ](?:que|qui|che|den|das)[ ][^.!?\n:=0-9]{1,30}?(?=[ ](?:es|era|est|était|è|ist|war|foi|fue|é)[ ]))?"
)
# "que me llegó", "que recebi", "che mi è arrivato", "que j'ai reçu", "die ich bekommen habe": a
# clause of receiving the code, no comma in it (a reviewer: "el código SMS que no me llega y el
# importe es 2500" must keep the amount)
_RECEIVED_CLAUSE = (
    r"[ ](?:que|qui|che|die|den|das)[ ](?:[^.!?\n:=0-9,]{0,16}[ ])?"
    r"(?:lleg[óo]|recib[íi]|mandaron|enviaron|chegou|recebi|mandaram|enviaram|arrivato|ricevuto|reçu"
    r"|bekommen(?:[ ]habe)?|erhalten(?:[ ]habe)?|kreeg|ontvangen|heb[ ]ontvangen|got|received)"
    r"(?=[ ](?:es|era|est|était|è|ist|war|foi|fue|é|is|was)[ ])"
)
# Each kind: label words, the filler between label and value, the value. Order matters: the first
# kind matching at a position wins ("PIN code" is a PIN, "security code" a CVV, and so on).
_LABEL_KINDS: list[tuple[str, list[str], str]] = [
    ("cvv", _CVV_WORDS, _OF_CARD + _ON_BACK + _FILL + _DIGITS_VALUE),
    ("pin", _PIN_WORDS, _OF_CARD + _PIN_CHANGE + _FILL + _DIGITS_VALUE),
    ("cvv", _CVV_WORDS, _CLAUSE_IS + _DIGITS_VALUE),
    ("pin", _PIN_WORDS, _CLAUSE_IS + _DIGITS_VALUE),
    ("pin", _PIN_WORDS, _REL_CLAUSE_IS + _DIGITS_VALUE),
    ("pin", _PIN_WORDS, _PIN_THOUGHT),
    ("pin", _PIN_WORDS, _BARE_IT_IS + r"(?P<v>[0-9]{4,6})" + _CLAUSE_ENDS),
    ("pin", _PASSCODE_WORDS, _BARE_IT_IS + r"(?P<v>[0-9]{4,8})" + _CLAUSE_ENDS),
    ("cvv", _CVV_WORDS, _BARE_IT_IS + r"(?P<v>[0-9]{3,4})" + _CLAUSE_ENDS),
    # set off by commas: "my card number and the CVV, 336, before I realised"
    ("cvv", _CVV_WORDS, r",[ ]{1,3}(?P<v>[0-9]{3,4})(?=[ ]{0,3}(?:[,.;)!]|$))"),
    ("pin", _PIN_WORDS, r",[ ]{1,3}(?P<v>[0-9]{4,6})(?=[ ]{0,3}(?:[,.;)!]|$))"),
    # a passcode of digits, grouped as a PIN's may be: "my phone banking passcode is 55 21 09"
    ("pin", _PASSCODE_WORDS, _FILL + _DIGITS_VALUE),
    ("sort", _SORT_WORDS, _FILL + _SORT_VALUE),
    # "SC 09-01-28, Acc 55102938"
    ("sort", [r"sc"], _FILL + _SORT_VALUE_APART),
    ("bsb", _BSB_WORDS, _FILL + _BSB_VALUE),
    ("routing", _ROUTING_WORDS, _FILL + _ROUTING_VALUE),
    ("otp", _OTP_WORDS, _FILL + _OTP_VALUE),
    ("otp", _MY_ID_OTP_WORDS, _MY_ID_OTP_REST),
    # what the code is for, before "is": "OTP for the PayLah top up is 170546"
    ("otp", _OTP_WORDS, _FOR_WHAT + _OTP_VALUE),
    ("otp", _OTP_WORDS, _CLAUSE_IS + _OTP_VALUE),
    ("otp", _OTP_WORDS, _FOR_WHAT_SMS + _OTP_VALUE),
    ("otp", _OTP_WORDS, _BARE_IT_IS + r"(?P<v>[0-9]{4,8})" + _CLAUSE_ENDS),
    # who sent it between: "el código SMS que me llegó es 104648" (a clause of receiving, no comma)
    ("otp", _OTP_WORDS, _RECEIVED_CLAUSE + _FILL_REQUIRED + _OTP_VALUE),
    ("secret_word", _SECRET_WORD_WORDS, _PASSWORD_FILL + _SECRET_WORD_VALUE),
    ("secret_phrase", _SECRET_PHRASE_WORDS, _PASSWORD_FILL + _SECRET_PHRASE_VALUE),
    ("secret_phrase", _SECRET_CALLED_WORDS, r"[ ]{1,3}" + _SECRET_PHRASE_VALUE),
    # the question in brackets between: "the answer to my security question (city I was born in) is Galway"
    (
        "secret_phrase",
        _SECRET_PHRASE_WORDS,
        r"[ ]{0,3}\([^()\n]{1,48}\)" + _PASSWORD_FILL + _SECRET_PHRASE_VALUE,
    ),
    # a name straight after the label: "mother's maiden name Henderson"
    # (read on the lower-cased text: :func:`_label_at` checks the name's capital in the text)
    ("secret_name", _MAIDEN_WORDS, r"[ ]{1,3}" + _SECRET_PHRASE_VALUE),
    ("password", _PASSWORD_WORDS, _OF_CARD + _PASSWORD_FILL + _PASSWORD_VALUE),
    ("password", _PASSWORD_WORDS, r"[ ]{0,3}(?P<v>(?=\S{0,63}[0-9])[^\s\[]\S{3,63}+)"),
    # what it opens between: "пароль от приложения Qwerty_1984", "password for the app Tr1cky1"
    # (6 characters or more, letters and digits; not a version or a time: "v2.3", "iOS17.2.1",
    # "10mins", "10minutes ago")
    (
        "password",
        _PASSWORD_WORDS,
        _OF_CARD + r"[ ]{1,3}(?!" + _VERSION_OR_TIME + r")"
        r"(?P<v>(?=\S{0,63}[0-9])(?=\S{0,63}\p{L})[^\s\[]\S{5,63}+)(?![ ]ago(?![\p{L}]))",
    ),
    ("password", _PASSWORD_WORDS, _REL_CLAUSE_IS + r"(?P<v>(?=\S{0,63}[0-9!@#$%^&*_+=?~])[^\s\[]\S{3,63}+)"),
    # "changed my password to Tr1cky_Pa55": after "to", only a token with a digit or a symbol
    (
        "password",
        _PASSWORD_WORDS,
        r"[ ](?:to|into|as)[ ]{1,3}(?P<v>(?=\S{0,63}[0-9!@#$%^&*_+=?~])[^\s\[]\S{3,63}+)",
    ),
    # "the security code you sent was 611688": five digits or more are not a card's (3-4)
    ("otp", [r"security[ ]code"], _CLAUSE_IS + r"(?P<v>[0-9]{5,8})(?![0-9])"),
    # "pass" alone only before a token mixing letters and digits: "pass Tr0ub4dor&3", "pass: Zx!9qLm"
    (
        "password",
        [r"pass"],
        r"(?:[ ]{0,3}[:=][ ]{0,3}|[ ]{1,3})(?P<v>(?=\S{0,63}[0-9])(?=\S{0,63}[a-z])[^\s\[]\S{3,63}+)",
    ),
    ("dob", _DOB_WORDS, _FILL + r"(?:the[ ])?" + _DATE_VALUE),
    ("ssn", _SSN_WORDS, _FILL + _SSN_VALUE),
    ("iban", _IBAN_WORDS, _FILL + _IBAN_VALUE),
    # "My IBAN for the transfer from Switzerland is CH63 ...", "account for my salary is 12345678"
    ("iban", _IBAN_WORDS, _FOR_WHAT + _IBAN_VALUE),
    ("id", _PAN_WORDS, _FILL + _PAN_VALUE),
    ("id", _FIN_WORDS, _FILL + _FIN_VALUE),
    ("id", _ID_WORDS, _FILL + _ID_VALUE),
    # "California DL D4827716": after "DL" alone, only a number led by its letters
    ("id", [r"dl"], r"[ ]{1,3}(?P<v>[a-z]{1,2}[0-9]{5,12})(?![0-9a-z])"),
    ("account", _ACCOUNT_WORDS, _FILL + _GROUPED_VALUE),
    ("account", _ACCOUNT_WORDS, _FOR_WHAT + _GROUPED_VALUE),
    # a PIX random key after its name: "chave pix 9d5d44f6-...", "pix key: ..." (not "do pix", a
    # payment's receipt, whose ids may be UUIDs too)
    (
        "pix",
        [r"chave[ ]pix(?:[ ]aleat[óo]ria)?", r"pix[ ]key", r"chave[ ]aleat[óo]ria"],
        _FILL + r"(?P<v>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?![0-9a-f\-])",
    ),
    # after "is", ":", "=", "-", "'s"; a made-up name right after the label; "user=" in a log line
    ("username", _USERNAME_WORDS, _FILL_REQUIRED + r"[\"']?" + _USERNAME_VALUE),
    ("username", _USERNAME_WORDS, _USERNAME_MADE_UP),
    ("username", [r"user", r"log-?in", r"sign-?in"], r"[ ]{0,2}[=:][ ]{0,2}" + _USERNAME_VALUE),
    (
        "ref",
        _REF_WORDS,
        r"(?:[ ](?:from|in|on|of)[ ](?:the|your|my|this|that)[ ]"
        r"(?:sms|text|message|e-?mail|letter|statement|app|receipt|invoice|call|website|confirmation|bill))?"
        # "transaction reference no.", "case ref", "complaint reference": a second reference word
        r"(?:[ ](?:ref(?:erence)?|id|number|op[ée]ration|operaci[óo]n|operazione)\.?(?![\p{L}]))?"
        r"(?:[ ]?(?:no\.?|nr\.?|number|num|id|#|n[º°o]\.?|n\.[º°o]\.?|n\.|code|号|番号|번호|номер))?"
        # "the reference number is 7781234490": "is" only after a word that names the number
        r"(?:(?<=(?:ref|reference|number|no|no\.|id|num|nr|nr\.|mb|barras|barcode|gtin|[ ]#"
        r"|[ ](?:sms|text|message|e-?mail|letter|statement|app|receipt|invoice|website|bill)))"
        r"[ ](?:is|was|é|es|est|ist|è))?"
        # (a dash glued between: "REF-88213047")
        r"[ ]{0,3}(?:[:#=]|(?<=[\p{L}.])-(?=[0-9a-z])|は|是|는|은)?[ ]{0,3}" + _REF_VALUE,
    ),
    # "Reference you gave me last time was 66120934"
    ("ref", [r"ref(?:erence)?", r"case", r"ticket", r"complaint", r"arn"], _CLAUSE_IS + _REF_VALUE),
    # a parcel's tracking number, the carrier named between: "Seguimiento SEUR: 0740938271650",
    # "Spedizione BRT 0512345678901", "Paczka InPost nr 5201...", "kargo takip no: 7281940356"
    (
        "ref",
        _TRACKING_WORDS,
        r"(?:[ ][a-z][a-z0-9]{1,9})?(?:[ ]?(?:no\.?|nr\.?|number|n[º°o]\.?))?[ ]{0,3}[:#=]?[ ]{0,3}"
        + _REF_VALUE,
    ),
    ("code", _CODE_WORDS, ""),  # built by _label_pattern
]
# After "code" (any language) the value needs "is" or ":" unless "your"/"my"... comes before it,
# and "error code", "promo code"... are never one-time codes; "код" (ru) needs neither.
_CODE_BEFORE = rf"(?<!(?:{_NOT_OTP_CODE})[ \-]?)(?<![\"'])"  # (nor a JSON key: {{"code": 4012}})
# "got code 482913", "received code 4829": a code someone was sent (never "use code SAVE10")
# "got a code 390271", "a text with a code 390271"
_GOT_BEFORE = (
    r"(?<=(?<![\p{L}])(?:(?:got|received|receive|texted|sent)[ ](?:(?:the|a|an|another)[ ])?"
    r"|(?:text|sms|message|e-?mail)[ ](?:with|containing)[ ](?:a|the)[ ]"
    # "un SMS con codice 994788", "um SMS com o código 482913", "un mensaje con el código"
    r"|(?:sms|messaggio|mensaje|mensagem)[ ](?:con|com)[ ](?:(?:il|el|o|un|uno|um)[ ])?"
    # "me llegó el código 447902", "j'ai reçu le code 582014", "mi è arrivato il codice"
    r"|(?:lleg[óo]|recib[íi]|reçu|arrivato|ricevuto|chegou|recebi)[ ](?:el|le|il|o|un|um)[ ]"
    # a code given away: "les di el código 780627", "I gave them the code 482913"
    r"|(?:di|dí|gave(?:[ ]them|[ ]him|[ ]her)?|dei|donné|ho[ ]dato|gegeben)"
    r"[ ](?:el|le|il|o|la|the|den|das)[ ]))"
)


_CJK_START = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}]")


def _label_pattern(kind: str, words: list[str], rest: str) -> str:
    spaced = [w for w in words if not _CJK_START.match(w)]
    glued = [w for w in words if _CJK_START.match(w)]
    alternatives = []
    if kind == "code":
        code = "(?:" + "|".join(words) + r")(?![\p{Ll}\p{Lu}\p{Lt}])"
        return (
            rf"{_SPACED_BEFORE}(?:{_DET_BEFORE}{code}{_CODE_CLAUSE}{_FILL}|{_DET_BEFORE}{code}{_FOR_WHAT_SMS}"
            rf"|{_GOT_BEFORE}{code}[ ]{{1,3}}"
            rf"|{_CODE_BEFORE}{code}{_CODE_CLAUSE}{_FILL_REQUIRED})" + _OTP_VALUE
        )
    if spaced:
        alternatives.append(_SPACED_BEFORE + "(?:" + "|".join(spaced) + r")(?![\p{Ll}\p{Lu}\p{Lt}])")
    if glued:
        alternatives.append("(?:" + "|".join(glued) + ")")
    return "(?:" + "|".join(alternatives) + ")" + rest


_LABEL_RES: list[tuple[str, Any]] = [
    (kind, regex.compile(_label_pattern(kind, words, rest))) for kind, words, rest in _LABEL_KINDS
]
_LABEL_RES.append(("otp", regex.compile(_SPACED_BEFORE + r"код(?![\p{L}])" + _FILL + _OTP_VALUE)))
_LABEL_RES.append(("otp", regex.compile(_SPACED_BEFORE + r"код(?![\p{L}])" + _FOR_WHAT_SMS + _OTP_VALUE)))


def _label_heads() -> dict[str, tuple[int, ...]]:
    """Head -> the label patterns (indexes into ``_LABEL_RES``) that may start with it, in order."""
    heads: dict[str, list[int]] = {}
    words = [(i, w) for i, (_, ws, _) in enumerate(_LABEL_KINDS) for w in ws]
    words += [(len(_LABEL_RES) - 2, "код"), (len(_LABEL_RES) - 1, "код")]  # (the two appended last)
    for index, word in words:
        head = _head(word)
        if len(head) < 2:
            raise AssertionError(f"a label pattern needs two literal characters first: {word!r}")
        indexes = heads.setdefault(head, [])
        if index not in indexes:
            indexes.append(index)
    # A head that is a prefix of another ("pin" / "pin码") also tries the longer head's patterns.
    for head in heads:
        for other, indexes in heads.items():
            if other != head and head.startswith(other):
                heads[head] = sorted(set(heads[head]) | set(indexes))
    return {head: tuple(sorted(indexes)) for head, indexes in heads.items()}


def _trie_pattern(words: Sequence[str]) -> str:
    """An alternation of literal ``words`` as a trie, so that the regex engine never backtracks far."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, dict]) -> str:
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:
            return (body if len(branches) == 1 and len(body) == 1 else f"(?:{body})") + "?"
        return body

    return build(trie)


_HEAD_KINDS = _label_heads()
# Heads in Latin letters must start a word: the check comes first, so that it is cheap inside words.
# The other heads start with rarer characters; a Cyrillic or Greek one is checked for a word start
# afterwards (CJK and kana labels are glued to the sentence around them).
_LATIN_HEADS = re.compile(
    r"(?<![a-z0-9_\u00c0-\u024f])(?=["
    + re.escape("".join(sorted({h[0] for h in _HEAD_KINDS if ord(h[0]) < 0x250})))
    + "])"
    + _trie_pattern(sorted(h for h in _HEAD_KINDS if ord(h[0]) < 0x250))
)
_OTHER_HEADS = re.compile(
    "(?=["
    + "".join(sorted({h[0] for h in _HEAD_KINDS if ord(h[0]) >= 0x250}))
    + "])"
    + _trie_pattern(sorted(h for h in _HEAD_KINDS if ord(h[0]) >= 0x250))
)
#: Before and after a head, how much text a label pattern may read (the memo key).
_LABEL_BEHIND, _LABEL_AHEAD = 24, 160


class _LabelHit(NamedTuple):
    kind: str
    start: int  # of the value, relative to the head
    end: int
    label_end: int


def _detect_labels(ctx: _Context) -> None:
    text = ctx.text
    lines = ctx.lines
    # Same length: U+0130 is the only character whose lower case is longer.
    low = text.replace("\u0130", "i").lower()
    heads = list(_LATIN_HEADS.finditer(low))
    others = list(_OTHER_HEADS.finditer(low))
    if others:
        heads = sorted(heads + others, key=lambda m: m.start())
    memo: dict[tuple[str, int], _LabelHit | None] = {}
    done = 0
    for m in heads:
        pos = m.start()
        if pos < done:
            continue
        if pos and 0x250 <= ord(low[pos]) < 0x530 and low[pos - 1].isalnum() and ord(low[pos - 1]) < 0x2E80:
            continue  # a Cyrillic or Greek head inside a word
        head = m.group()
        window_start = max(0, pos - _LABEL_BEHIND)
        # (``lines`` is ``text`` with its line breaks: a passphrase ends at one, see _passphrase_end)
        key = (lines[window_start : pos + _LABEL_AHEAD], pos - window_start)
        if key in memo:
            found = memo[key]
        else:
            indexes = _HEAD_KINDS.get(head) or _head_kinds(head)
            found = memo[key] = _label_at(text, low, lines, pos, indexes)
        if found is None:
            continue
        start, end = pos + found.start, pos + found.end
        done = pos + found.label_end
        added = len(ctx.hits)
        _label_value(ctx, found.kind, start, end, text[start:end])
        if len(ctx.hits) > added:
            # Labels after what the value turned out to be are still read: a value's pattern may
            # take the words after it ("NI number QQ123456C and my DOB is 12/03/1985": a trial's
            # finding, the date of birth was kept).
            done = min(done, max(hit.end for hit in ctx.hits[added:]))


@lru_cache(maxsize=256)
def _head_kinds(matched: str) -> tuple[int, ...]:
    """The trie matched ``matched``: the patterns of every head it starts with."""
    return tuple(sorted({i for head, idx in _HEAD_KINDS.items() if matched.startswith(head) for i in idx}))


#: Capitalised words that start a sentence about a maiden name, not the name ("mother's maiden name
#: Verification failed", "... name I forgot", "... name Thanks").
_NOT_A_NAME = frozenset(
    """
    i verification question questions thanks thank yesterday today tomorrow has have is was isn't wasn't
    security please help reset changed change wrong failed fails hello hi not doesn't can can't could
    should keeps won't will would does did do the my your a an it its it's that this what why how when
    where who which again also only just still field box answer and but or so ok okay yes no
    """.split()  # noqa: SIM905 - a word list reads better as words
)


def _maiden_name_end(text: str, lines: str, pos: int, start: int) -> int | None:
    """Where a maiden name said straight after its label ends ("mother's maiden name Henderson"):
    one capitalised word on the label's line, not a word of :data:`_NOT_A_NAME`, ending its clause;
    None otherwise, and for a label in title case ("Mother's Maiden Name Question": a heading)."""
    if (
        "\n" in lines[pos:start]
        or not text[start].isupper()
        or any(c.isupper() for c in text[pos + 1 : start])
    ):
        return None
    end = start
    while end < len(text) and (text[end].isalpha() or text[end] in "'’-"):
        end += 1
    if text[start:end].lower() in _NOT_A_NAME:
        return None
    after = text[end : end + 5]
    if after and not (after[0] in ".,;:!?)\n" or after.startswith((" and", " \n")) or after.isspace()):
        return None  # "... name Has to be entered?": the sentence goes on
    return end


#: After a secret's label and "'s", what reads as "is" rather than as a possessive: a value with a
#: digit or a sign in it ("password's Hunter2xyz"), or one word ending its clause ("memorable word's
#: butterfly"); not "the password's requirements are confusing", "memorable word's first letter".
_SAID_SHORT = regex.compile(
    r"[\"'“‘]?(?:(?=[^\s\[]{0,63}[^\p{L}\s\[])[^\s\[]{1,64}"
    r"|[\p{L}\p{M}'’\-]{1,32}[\"'”’]?[ ]{0,2}(?:[.,;:!?)\n]|$"
    # ... or before a word that starts another clause: "my password's hunter and I can't log in",
    # "memorable word's rosebud I think" (a reviewer's finding)
    r"|(?:and|but|so|or|i|though|because|cos|lol|haha|pls|please|yet|which|it)(?![\p{L}'’])))"
)


def _label_at(text: str, low: str, lines: str, pos: int, indexes: tuple[int, ...]) -> _LabelHit | None:
    for index in indexes:
        kind, pattern = _LABEL_RES[index]
        m = pattern.match(low, pos)
        if m is None:
            continue
        start, end = m.span("v")
        if "apos" in pattern.groupindex and m.start("apos") >= 0 and not _SAID_SHORT.match(low, start):
            continue  # "the password's requirements are confusing": a possessive, not "is"
        if kind in _SECRET_LENGTHS and "0" <= low[start] <= "9" and low[end - 1] <= "9":
            secret = _secret_digits(low[start : start + _SECRET_WINDOW], end - start, kind)
            if secret is None:
                continue  # too short or too long for this label: not its value
            if not secret:
                return None  # a card or a phone number after the label: their detectors decide
            start, end = start + secret[0], start + secret[1]
            return _LabelHit(kind, start - pos, end - pos, max(end, m.end()) - pos)
        if kind == "secret_name":
            name_end = _maiden_name_end(text, lines, pos, start)
            if name_end is None:
                continue  # "mother's maiden name question", "... name Verification failed"
            return _LabelHit("password", start - pos, name_end - pos, name_end - pos)
        if kind in ("secret_word", "secret_phrase") and _QA_PAIR.match(text, start):
            return None  # "security question answer: first pet - biscuit": the pair's answer, below
        if kind in ("secret_word", "secret_phrase", "secret_name"):
            quoted = low[start] in "\"“'"
            if not quoted:
                end = _line_end(lines, start, end)
            span = _password_span(low, start, end)
            if span is None:
                return None  # "my memorable word is wrong", "security answer: [PASSWORD]"
            start, end = span
            if not quoted and end - start < 4 and _ANY_DIGIT.search(low, start, end):
                return None  # "my memorable word is 8 letters long"
            if not quoted and _secret_word_state(text, low, start, end):
                return None  # "my memorable word is not working": a sentence about it, and final
            # Labels in the words after the first are still read ("... is rex, pin 4921").
            space = -1 if quoted else low.find(" ", start, end)
            return _LabelHit("password", start - pos, end - pos, (end if space < 0 else space) - pos)
        if kind == "password":
            quoted = low[start] in "\"“'"
            span = _password_span(low, start, end)
            if span is None:
                continue
            start, end = span
            if not quoted:
                # "my password is blue sky": the words of a passphrase, up to the end of its clause;
                # None for "my password is 12 characters long", "is not working", "was denied"
                after_word = "sign" in pattern.groupindex and m.start("sign") < 0
                phrase_end = _passphrase_end(text, low, lines, start, end, after_word)
                if phrase_end is None:
                    continue
                end = phrase_end
            if low.startswith("pass", pos) and _NOT_A_PASSWORD.search(low, max(0, pos - 12), pos):
                continue  # "boarding pass: AB1234"
            if low.startswith(_PIN_AS_PASSWORD, pos) and _PIN_DIGITS.fullmatch(low, start, end):
                kind = "pin"  # 银行卡密码是739105: a card's "password" of digits is its PIN
            # Labels in the words after the first are still read, as after a security answer, and
            # those past the end of the password ("password: hunter2\nKonto 12345678").
            space = -1 if quoted else low.find(" ", start, end)
            label_end = m.end() if quoted else end if space < 0 else space
            return _LabelHit(kind, start - pos, end - pos, label_end - pos)
        if kind == "iban":
            # The value's pattern takes up to 30 more characters, words included ("DE89...3000 and my
            # DOB is"): it ends where the IBAN's groups do, so that labels after it are still read (a
            # trial's finding: the date of birth after an IBAN was kept).
            end = start + _iban_extent(text[start:end])
            return _LabelHit(kind, start - pos, end - pos, end - pos)
        return _LabelHit(kind, start - pos, end - pos, m.end() - pos)
    if any(_LABEL_KINDS[i][0] in ("otp", "code") for i in indexes if i < len(_LABEL_KINDS)):
        # "G-582014 is your verification code", "482913 as the sign-in code"
        label = _OTP_LABEL.match(low, pos)
        before = _OTP_BEFORE.search(low, max(0, pos - 48), pos) if label else None
        if label and before:
            return _LabelHit("otp", before.start("v") - pos, before.end("v") - pos, label.end() - pos)
    return None


#: Digits a secret has, by label kind (a longer value is looked at as a whole: :func:`_secret_digits`).
_SECRET_LENGTHS: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {"cvv": (3, 4), "pin": (4, 6), "otp": (4, 10), "code": (4, 10)}
)
#: One more digit group of the number a secret label is followed by.
_SECRET_GROUP = re.compile(r"(?:[ ]{1,2}|[ ]?-[ ]?)([0-9]{1,19}+)(?![0-9])")
#: A second secret after a card: "card + pin: 4604 2972 5793 5225 / 4821".
_SECRET_AFTER = re.compile(
    r"[ ]{0,3}(?:[/,;|&+]|and|y|et|und|e|и)[ ]{0,3}(?:(?:pin|cvv|cvc|code)[ ]{0,3}[:=]?[ ]{0,3})?"
    r"([0-9]{3,10})(?![0-9])"
)
_NOT_A_PASSWORD = re.compile(r"(?:boarding|bus|season|day|ski|travel|rail|hall|free|all[ -]access)[ ]$")


#: How much text after a secret label :func:`_secret_digits` reads.
_SECRET_WINDOW = 128


#: A sort code (12-34-56, one separator throughout) after a secret's digits and a space.
_SORT_AFTER_SECRET = re.compile(r"[ ]{1,3}[0-9]{2}(?P<sep>[\-./])[0-9]{2}(?P=sep)[0-9]{2}")


@lru_cache(maxsize=2048)
def _secret_digits(text: str, end: int, kind: str) -> tuple[int, int] | tuple[()] | None:
    """The span of the secret in ``text``, which starts with the label's value ``text[:end]`` (digits).

    A label right before a longer number does not cut it: the number is decided as a whole. Spaced
    digits of the right count are the secret ("9 9 3 1", "90 31 47"); a Luhn-valid card or a valid
    phone number is left to its detector (``()``), and a second secret after the card is the label's
    ("card + pin: 4111 1111 1111 1111 / 4821"); any other run of groups is hidden whole. None when a
    single group is too short or too long for the label.
    """
    start = 0
    lo, hi = _SECRET_LENGTHS[kind]
    sizes = [end]
    run_end = end
    while len(sizes) < 12 and (more := _SECRET_GROUP.match(text, run_end)) is not None:
        sizes.append(more.end(1) - more.start(1))
        run_end = more.end(1)
    total = sum(sizes)
    if len(sizes) == 1:
        return (start, end) if lo <= total <= hi else None
    if max(sizes) <= 3 and lo <= total <= hi:
        return start, run_end  # spaced digits: "9 9 3 1", "90 31 47"
    card = _CARD.match(text, start) or _CARD_OTHER.match(text, start)
    if card is not None:
        found = _card_match(card.group()) if card.re is _CARD else ("card", len(card.group()), "", "")
        if found and found[0] == "card" and (card.re is _CARD or _card_why(_digits(card.group()))):
            after = _SECRET_AFTER.match(text, start + found[1])
            if after is not None and lo <= len(after.group(1)) <= hi:
                return after.span(1)
            return ()
    if lo <= sizes[0] <= hi and _SORT_AFTER_SECRET.fullmatch(text, end, run_end):
        return start, end  # "my pin is 0428 12-34-56": the PIN, then a sort code (its own detector's)
    if 9 <= total <= 13 and _valid_phone_anywhere(text[start:run_end]):
        return ()
    return start, run_end


@lru_cache(maxsize=1024)
def _valid_phone_anywhere(candidate: str) -> bool:
    """Whether ``candidate`` is a valid phone number in a region tried (:func:`configure_regions`)."""
    return any(_parse_valid(candidate, region) for region in _regions)


#: A word in lower-case letters only, after "password is": the sentence, not the password, when
#: it reads as one (:data:`_SENTENCE_WORD`); any other word there is the password.
_PLAIN_WORD = regex.compile(r"[\p{Ll}\p{Lo}\p{M}'’\-]+")
#: Word forms that continue a sentence ("denied", "expiring", "easily", "guessable", "useless"),
#: and words of scripts other than Latin (a sentence in that language, not an ASCII password).
_SENTENCE_WORD = regex.compile(r"(?:ed|ing|ly|able|ible|ful|less|ous|ive|ent|ant|ion|ions)$|[^\p{Latin}'’\-]")
#: After a password label, a word in "-ly" that ends the clause is the password ("my password is
#: butterfly", "... is holly and it won't work"), unless it is one of these adjectives and adverbs
#: ("my password is silly"); followed by another word it is an adverb ("is apparently wrong").
_LY_WORDS = frozenset(
    """
    only really likely unlikely early daily weekly monthly yearly hourly nightly silly ugly lovely friendly
    unfriendly user-friendly lonely costly deadly elderly timely untimely orderly ghastly smelly
    apparently actually currently obviously clearly easily quickly slowly badly poorly properly correctly
    incorrectly recently suddenly completely totally literally definitely probably possibly certainly
    mostly partly fully nearly entirely usually normally basically generally randomly temporarily
    permanently automatically finally simply exactly especially seriously honestly technically
    supposedly unfortunately hopefully originally initially previously immediately constantly
    repeatedly frequently regularly rarely barely hardly merely securely safely manually wrongly
    officially truly surely newly lately personally fairly extremely weirdly strangely
    """.split()  # noqa: SIM905 - a word list reads better as words
)
#: Words after which a secret's clause is over: "butterfly and it won't work", "pudding please help".
_CLAUSE_END = regex.compile(
    r"[ ]{0,3}(?:$|[.,;:!?)\]\n]|(?:and|but|or|so|because|cos|coz|though|although|please|pls|plz|thanks"
    r"|thank|thx|i|i'm|im|i've|it|it's|can|could|lol|btw|yes|yeah|ok|okay)(?![\p{L}'’\-]))"
)


def _ly_word_ends_clause(low: str, start: int, end: int) -> bool:
    """Whether ``low[start:end]``, after a password label, is a word in "-ly" that ends its clause."""
    return (
        low.endswith("ly", start, end)
        and low[start:end] not in _LY_WORDS
        and _CLAUSE_END.match(low, end) is not None
    )


#: A passphrase is at most this many characters (and six words, :data:`_PASSWORD_VALUE`): a bound on
#: how much of a sentence a label can take when its clause does not end ("my password is blue sky
#: mountain river stone", no full stop). 64 characters hold any passphrase a bank accepts (most cap a
#: password at 20-32) and four or five common words; a longer value is cut at a word.
_PASSPHRASE_MAX = 64
_WORD = regex.compile(r"\S+")


def _line_end(lines: str, start: int, end: int) -> int:
    """``end``, or the end of the line ``lines[start:end]`` starts on (a secret never runs on to the
    next line: "password: blue sky\nusername: bob"), before the spaces that end it."""
    brk = lines.find("\n", start, end)
    if brk < 0:
        return end
    while brk > start and lines[brk - 1] == " ":
        brk -= 1
    return brk


def _script(word: str) -> str:
    """The script of the first letter of ``word`` ("LATIN", "CYRILLIC", "CJK"...), "" without one."""
    for ch in word:
        if ch.isalpha():
            return unicodedata.name(ch, "").split(" ", 1)[0]
    return ""


def _passphrase_end(text: str, low: str, lines: str, start: int, end: int, after_word: bool) -> int | None:
    """Where the password that starts at ``start`` ends, within the value ``low[start:end]`` that
    :data:`_PASSWORD_VALUE` read (its first token, then up to five more words up to one going on with
    the sentence); None when the value is the sentence, not a password.

    The value ends at a line break, before a word in another script than its first (the sentence goes
    on in its language), and within :data:`_PASSPHRASE_MAX` characters (at a word). Its first word is
    the password's, as when a password was one token, unless it is *doubtful*: a word of the sentence
    (one of :data:`_ORDINARY`, "correct", "new", "strong"; or, after "is" / "was", ``after_word``, a
    lower-case word of :data:`_SENTENCE_WORD`, "denied", "expiring", "easily", other than a word in
    "-ly" ending its clause, "is butterfly"), or shorter than 4 characters ("red"; a short token with
    a digit is never a password: "is 12 characters long"). A doubtful first word starts a passphrase
    only when it is not a state or function word (:data:`_SECRET_WORD_LEAD`, :data:`_LY_WORDS`: "not",
    "too", "the", "apparently") and is followed by two words of letters (one after a short word) that
    are not words of the sentence either (:func:`_state_word`); the passphrase ends before the first
    word that is. So "correct horse battery staple", "red fox jumps" and "red fox" are passwords, and
    "is correct but ...", "is too short", "is expiring soon", "is strong enough", "is way too long"
    are sentences about one: a sentence loses no word to a guess, and a passphrase of random words
    rarely holds two of the sentence's words after its first.
    """
    end = _line_end(lines, start, end)
    words = [(w.start(), w.end()) for w in _WORD.finditer(low, start, end)]
    script = ""
    for i, (w_start, w_end) in enumerate(words):
        other = _script(low[w_start:w_end])
        if script and other and other != script:
            del words[i:]  # "пароль: Qwerty_2024 не подходит": the sentence goes on in its language
            break
        script = script or other
    while len(words) > 1 and words[-1][1] - start > _PASSPHRASE_MAX:
        words.pop()
    if not words:
        return None
    end = words[-1][1]
    while end > start and low[end - 1] in _TRAILING_PUNCT:
        end -= 1
    first_end = min(words[0][1], end)
    while first_end > start and low[first_end - 1] in _TRAILING_PUNCT:
        first_end -= 1
    first = low[start:first_end]
    if not first:
        return None
    short = len(first) < 4
    if short and _ANY_DIGIT.search(first):
        return None  # "my password is 12 characters long", "is 8 letters"
    # A word of the sentence: "correct", "new", "strong"; after "is", "denied", "expiring", "easily"
    sentence = first in _ORDINARY or (
        after_word
        and not short
        and _PLAIN_WORD.fullmatch(text, start, first_end) is not None
        and _SENTENCE_WORD.search(first) is not None
        and not _ly_word_ends_clause(low, start, first_end)
    )
    if not sentence and not short:
        return end  # "my password is dragon", "is blue sky", "is Tr0ub4dor&3"
    if first in _SECRET_WORD_LEAD or first in _LY_WORDS:
        return None  # "is not working", "is too short", "is apparently wrong", "is my dog's name"
    taken = 0
    for w_start, w_end in words[1:]:
        word = low[w_start : min(w_end, end)].rstrip(_TRAILING_PUNCT)
        if not _PASSPHRASE_WORD.fullmatch(word) or _state_word(text, word, w_start):
            break  # "is correct every time", "is strong enough", "is expiring soon", "is max 20 chars"
        taken += 1
    if taken < (2 if sentence else 1):
        return None
    end = words[taken][1]
    while end > start and low[end - 1] in _TRAILING_PUNCT:
        end -= 1
    return end


#: After a doubtful first word (:func:`_passphrase_end`), the words of a passphrase: letters only.
_PASSPHRASE_WORD = regex.compile(r"[\p{L}\p{M}'’\-]{1,32}")


def _state_word(text: str, word: str, start: int) -> bool:
    """Whether ``word`` (lower case; ``text[start:]`` as typed) reads as a word of a sentence about a
    secret: one of :data:`_ORDINARY`, a state or function word, an adverb in "-ly", or a lower-case
    word in -ed, -ing, -able... ("is correct every time", "is strong enough", "is hard coded")."""
    return (
        word in _ORDINARY
        or word in _SECRET_WORD_LEAD
        or word in _LY_WORDS
        or (
            _PLAIN_WORD.fullmatch(text, start, start + len(word)) is not None
            and _SENTENCE_WORD.search(word) is not None
        )
    )


#: After a memorable word or security answer label, a value starting with one of these is a sentence
#: about the secret ("is wrong", "is not working", "is the same", "is being rejected"); a value that is
#: one of :data:`_ORDINARY` as a whole too ("is new", "is correct"), but not a value it only starts
#: ("security answer is new york").
_SECRET_WORD_LEAD = frozenset(
    """
    not no never wrong incorrect invalid expired expiring locked blocked suspended frozen disabled
    deactivated reset changed changing working forgotten forgot lost missing compromised hacked stolen
    denied declined rejected refused required needed mandatory case-sensitive case-insensitive too still
    being been also now very really so just only definitely probably apparently actually currently always
    the a an my your his her their our its it this that these those what how where why which who here
    there please set saved stored sent shown hidden asked same different showing coming saying asking
    getting going in on for at to of from with without about and or but if because as like less more
    longer shorter all any some something nothing anything everything spelt misspelt misspelled written
    kept given taken gone meant supposed capitalised capitalized lowercase uppercase pending failing
    loading one two three four five six seven eight nine ten eleven twelve stuck broken down unclear
    odd fake done back messed weird confusing faulty bugged glitching glitchy unreadable unknown
    """.split()  # noqa: SIM905 - a word list reads better as words
)
_CASE_SENSITIVE = regex.compile(r"case[ ](?:in)?sensitiv")
_NEXT_WORD = regex.compile(r"[ ]{1,3}[\p{L}]")


def _secret_word_state(text: str, low: str, start: int, end: int) -> bool:
    """Whether the value ``text[start:end]`` after a memorable word / security answer label is a state
    of the secret ("not working", "the same", "case sensitive"), not the secret itself. (A value that
    is one of :data:`_ORDINARY` as a whole, "is new", is turned down before: :func:`_password_span`.)"""
    value = low[start:end]
    first = value.split(" ", 1)[0].rstrip(_TRAILING_PUNCT)
    if first in _SECRET_WORD_LEAD or _CASE_SENSITIVE.match(value):
        return True
    if first != value or not first.endswith(("ed", "ing")):
        return False
    # "is hyphenated": a lower-case participle (but "is Ahmed" is a name, "is bed" too short to tell)
    if first.endswith("ed") and len(first) >= 5 and text[start].islower():
        return True
    # "my memorable word is showing as incorrect": a verb, unless its clause ends ("is pudding, ...")
    return _NEXT_WORD.match(low, end) is not None and _CLAUSE_END.match(low, end) is None


#: Where 密码 / 비밀번호 ("password") followed by 4-6 digits is a card PIN.
_PIN_AS_PASSWORD = ("密码", "密碼", "비밀번호")
_PIN_DIGITS = re.compile(r"[0-9]{4,6}")
_OTP_LABEL = regex.compile(
    _SPACED_BEFORE
    + "(?:"
    + "|".join(w for w in _OTP_WORDS if not _CJK_START.match(w))
    + r"|(?<=(?:your|my|the|a|new)[ ])code)(?![\p{Ll}\p{Lu}\p{Lt}])"
)
_OTP_BEFORE = regex.compile(
    r"(?:(?<![a-z0-9\-])(?P<v>(?=[a-z\-]{0,9}[0-9])[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){3,9})"
    r"[ ]{1,3}(?:(?:is|was|as|=|:|—|-)[ ]{1,3})?"
    # six to eight digits, an emoji or "that's" between: "🙏 612915 that's the code", "👉 366199 👈
    # there's your code" (not "WELCOME25 that's the code for 10% off", a promotion's)
    r"|(?<![a-z0-9\-])(?P<v>[0-9]{6,8})(?:[ ]{1,3}|[ ]{0,3}[\p{So}\p{Sk}\p{Cf}\ufe0f]{1,8}[ ]{0,3})"
    r"(?:(?:is|was|as|=|:|—|-|that['’]?s|that[ ]is|there['’]?s|here['’]?s|it['’]?s)[ ]{1,3})?)"
    r"(?:(?:your|my|the|a|an|new)[ ]{1,3}){0,2}$"
)


#: At most this many values found by :data:`_CONTINUED` in one text.
_CONTINUED_MAX = 16
#: The labelled secrets a joined clause can give another value of (:data:`_CONTINUED`).
_CONTINUED_KINDS = ("pin", "cvv", "otp")
#: A clause joined to a labelled secret that gives another value of the same kind without naming the
#: label again: "... is 4921 and for card ending 4455 is 1234", "... and for the other one it's 1234",
#: "... 482913 and then a second one 119034", "... is 4471 or 4417", and a correction ("... 7 7 2 9 1 4 no
#: wait I read it wrong, 7 7 2 9 4 1"). Only these shapes: another card or account, with "is",
#: "was", ":" or "=" before the value ("... and for my other card 4455" keeps the card's last four),
#: or "the other / second / new one". The value ends its clause (not the first group of a card,
#: a date or an amount); "... and my balance is 1234" names something else and stays.
_LINK = r"[ ]?,?[ ]{0,3}(?:it[ ]is|it's|its|it[ ]was|is|was|:|=)"
_CONTINUED = regex.compile(
    r"[ ]?,?[ ]{1,3}(?:and|&|plus|but|or|then)[ ]{1,3}(?:then[ ]{1,3})?"
    r"(?:"
    r"(?:(?:for|on)[ ]{1,3})?(?:(?:the|my|a|your|his|her|our|their)[ ]{1,3})?(?:[\p{L}]+['’]s[ ]{1,3})?"
    r"(?:(?:other|second|new|old|next|another|joint|business|credit|debit|savings|spare)[ ]{1,3})?"
    # the card's last four digits stay, as after a label ("card ending 3012")
    r"(?:card|account|one)(?:[ ](?:number[ ])?(?:ending(?:[ ](?:in|with))?[ ])?\**\d{4}(?="
    + _LINK
    + r"))?"
    + _LINK
    + r"|(?:for[ ]{1,3})?(?:(?:a|the|my)[ ]{1,3})?(?:second|other|new|next|latest|old|previous)[ ]{1,3}"
    r"(?:one|code|pin)(?:" + _LINK + r")?"
    # "my pin is 0007 or maybe 7000"
    r"|(?:maybe|perhaps|possibly|probably)(?:" + _LINK + r")?"
    r")"
    r"[ ]{0,3}(?P<v>\d+)(?![\d\p{L}]|[ \-./,:]?\d)"
    # "my PIN is 4471 or 4417", "el pin es 5820 o 5028": a value right after "or"; "from 1357 to 8642"
    r"|[ ]?,?[ ]{1,3}(?:or|to|o|ou|oder|of|lub|albo|или|либо|→|->|=>)[ ]{1,3}"
    r"(?P<v>\d+)(?![\d\p{L}]|[ \-./,:]?\d)"
    # a correction: "the code is 7 7 2 9 1 4 no wait I read it wrong, 7 7 2 9 4 1" (in the sentence)
    r"|[ ]?[,;!\-]?[ ]{1,3}sorry[ ]*,?[ ]{1,3}(?P<v>\d(?:[ \-]?\d){2,18}+)(?![\d\p{L}]|[ \-./,:]?\d)"
    r"|[ ]?[,;!.]?[ ]{1,3}(?:no[ ]wait|sorry[ ,]+i[ ]mean[t]?|i[ ]mean[t]?|correction|typo|oops|nee[ ]wacht"
    r"|nein[ ]warte|non[ ]attends|no[ ]espera|no[ ]aspetta|não[ ]espera|nie[ ]czekaj)"
    r"(?![\p{L}])[^.!?\n0-9£$€]{0,40}?(?P<v>\d(?:[ \-]?\d){2,18}+)(?![\d\p{L}]|[ \-./,:]?\d)",
    regex.IGNORECASE,
)


def _continued_secrets(ctx: _Context) -> None:
    """A PIN, CVV or one-time code followed, in the same sentence, by another value of its kind in a
    joined clause that does not name the label again (:data:`_CONTINUED`): that value is one too."""
    text = ctx.text
    found = [h for h in ctx.hits if h.priority == _P_SECRET and h.kind in _CONTINUED_KINDS]
    seen: set[int] = set()
    budget = _CONTINUED_MAX
    while found and budget > 0:
        hit = found.pop()
        if hit.end in seen:
            continue  # (each value's clause is read once: chains stay linear)
        seen.add(hit.end)
        m = _CONTINUED.match(text, hit.end)
        if m is None:
            continue
        start, end = m.span("v")
        if end - start != hit.end - hit.start:  # a PIN, CVV or code has the length of the first one
            continue
        before = text[max(0, start - 8) : start].lower()
        if _GIVEN_NOT_SECRET.match(text, end) or before.endswith(("ending ", "card ", "account ")):
            continue  # an amount ("... 1500 pounds"), a card's last four ("card ending 4455")
        budget -= 1
        why = f"another {hit.kind} in a clause joined to the one found earlier"
        ctx.add(_P_SECRET, start, end, hit.kind, hit.detector, why)
        found.append(ctx.hits[-1])  # and a third value may follow this one


#: A secret (one-time code, PIN, CVV, password) found once is hidden wherever else it is typed in
#: the text ("sms code 571209 not received, got it now 571209"): at most this many values, of at least
#: :data:`_REPEAT_MIN` characters (shorter ones are too often something else).
_REPEAT_VALUES = 8
_REPEAT_MIN = 4


def _repeat_secrets(ctx: _Context) -> None:
    text = ctx.text
    values = {
        text[h.start : h.end]: h
        for h in ctx.hits
        if h.priority == _P_SECRET
        and h.kind in ("otp", "pin", "cvv", "password")
        and h.end - h.start >= _REPEAT_MIN
    }
    for value, hit in list(values.items())[:_REPEAT_VALUES]:
        at = text.find(value)
        while at >= 0:
            end = at + len(value)
            glued = (at > 0 and text[at - 1].isalnum()) or (end < len(text) and text[end].isalnum())
            if at != hit.start and not glued:
                why = f"the {hit.kind} found earlier in the text, typed again"
                ctx.add(_P_SECRET, at, end, hit.kind, hit.detector, why)
            at = text.find(value, end)


def _label_value(ctx: _Context, kind: str, start: int, end: int, value: str) -> None:
    if kind == "ref":
        ctx.soft.append((start, end))
    elif kind == "cvv":
        ctx.add(_P_SECRET, start, end, "cvv", "rule:cvv", f"{len(value)} digits after a CVV label")
    elif kind == "pin":
        ctx.add(_P_SECRET, start, end, "pin", "rule:pin", f"{len(value)} digits after a PIN label")
    elif kind in ("otp", "code"):
        why = "after a one-time-code label" if kind == "otp" else "after 'code is'"
        ctx.add(_P_SECRET, start, end, "otp", "rule:otp", f"{len(value)} characters {why}")
    elif kind == "password":
        ctx.add(_P_SECRET, start, end, "password", "rule:password", "token after a password label")
    elif kind == "dob":
        ctx.add(_P_SECRET, start, end, "dob", "rule:dob", "date after a date-of-birth label")
    elif kind == "sort":
        ctx.add(_P_LABELLED, start, end, "sort_code", "rule:sort_code", "6 digits after a sort-code label")
    elif kind == "bsb":
        ctx.add(_P_LABELLED, start, end, "sort_code", "rule:bsb", "6 digits after a BSB label")
    elif kind == "routing":
        ctx.add(_P_LABELLED, start, end, "sort_code", "rule:routing", "9 digits after a routing-number label")
    elif kind == "ssn":
        if _valid("stdnum.us.ssn", _digits(value)):
            ctx.add(_P_LABELLED, start, end, "ssn", "stdnum.us.ssn", "valid SSN after an SSN label")
        else:
            ctx.add(_P_LABELLED, start, end, "ssn", "rule:ssn", "9 digits after an SSN label")
    elif kind == "account":
        _labelled_account(ctx, start, value)
    elif kind == "pix":
        ctx.add(_P_LABELLED, start, end, "account", "rule:pix_key", "PIX random key (a UUID) after its name")
    elif kind == "iban":
        _labelled_iban(ctx, start, value)
    elif kind == "id":
        _labelled_id(ctx, start, value)
    elif kind == "username":
        low = value.lower()
        # (an address after the label is the e-mail rule's)
        if low not in _NOT_A_USERNAME and low not in _ORDINARY and "@" not in value:
            ctx.add(_P_LABELLED, start, end, "username", "rule:username", "token after a user-name label")
        # a login given as a pair, its password after a slash or a bar: "login: janedoe88 /
        # s3cretP@ss", "username jdoe | Pa55word!"
        pair = _PAIR_PASSWORD.match(ctx.text, end)
        second = pair.group("v").lower().rstrip(".,;:!?)") if pair is not None else ""
        if (
            pair is not None
            and second not in _ORDINARY
            and second not in _NOT_A_PAIR
            and low not in _NOT_A_USERNAME
        ):
            first, last = pair.span("v")
            ctx.add(_P_LABELLED, first, last, "password", "rule:password", "after a user name and a slash")


#: The second of a login given as a pair, after the user name: " / s3cretP@ss", "|hunter22".
_PAIR_PASSWORD = regex.compile(r"[\"']?[ ]{0,2}[/|][ ]{0,2}(?P<v>[^\s\[/|][^\s\[]{3,63}+)")
#: Words after a user name and a slash that go on with the sentence, not its password: "login: jdoe /
#: email", "username: marco | account 12345678", "username: jdoe / thanks".
_NOT_A_PAIR = frozenset(
    """email e-mail mail thanks thank today tomorrow yesterday account phone mobile number address name
    password passcode pin app web online login username user id card code help support""".split()  # noqa: SIM905
)

#: Words after a user-name label that are the sentence, not the name.
_NOT_A_USERNAME = frozenset(
    """is was and the my your not wrong incorrect invalid locked blocked and or but please help
    field box name id login password doesnt doesn't isnt isn't won't wont has have had for of on in
    to at with from reset forgot forgotten changed change same correct right unknown missing new
    old my mine number on""".split()  # noqa: SIM905
)


_CJK = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")
_TRAILING_PUNCT = ".,;:?)]}»\"'”’」』"
_LEADING_PUNCT = "\"'“‘«「『("


def _password_span(low: str, start: int, end: int) -> tuple[int, int] | None:
    token = low[start:end]
    if _CJK.match(token):
        return None  # "密码是错的": passwords are typed in ASCII; a CJK word is the sentence
    cjk = _CJK.search(token)
    if cjk:
        end = start + cjk.start()
    while end > start and low[end - 1] in _TRAILING_PUNCT:
        end -= 1
    # a dash after a space ends the answer: "St Bartholomew's Primary - it was accepted"
    while end - start > 2 and low[end - 1] in "-–—" and low[end - 2] == " ":
        end -= 2
        while end > start and low[end - 1] == " ":
            end -= 1
    while start < end and low[start] in _LEADING_PUNCT:
        start += 1
    if start >= end or low[start:end] in _ORDINARY or _PLACEHOLDER.fullmatch(low[start:end].upper()):
        return None
    return start, end


#: Digit groups going on after a labelled value with another separator: ``.``, ``,`` or ``_`` (an
#: amount, a card in dots), or a date's ``/dd/yy``; not a ``/`` suffix of the account ("12 3456 7890/2").
_MORE_GROUPS_AFTER = re.compile(r"[.,_][0-9]|/[0-9]{1,2}/[0-9]{2}")


#: An ISO date (2025-03-14), which no account number is: "my savings account 2025-03-14 shows ...".
_ISO_DATE = re.compile(r"(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])")


def _labelled_account(ctx: _Context, start: int, value: str) -> None:
    if _ISO_DATE.fullmatch(value.strip()):
        return
    groups = list(_DIGIT_RUN.finditer(value))
    digits = sum(g.end() - g.start() for g in groups)
    # The value read cut short inside a longer number ("acct 12345678 4111.1111.1111.1111": "12345678
    # 4111", the card's first group; "account 1234 5678 12.50 was charged": an amount's): its last
    # group is that number's, the groups before it the account's.
    if len(groups) > 1 and _MORE_GROUPS_AFTER.match(ctx.text, start + len(value)) is not None:
        amount = groups.pop()
        # ... and so are the 1-3 digit groups before three digits, its thousands ("12345678 2 500.00",
        # "1 234 567,89"; not "12 34 56 78 9.99", whose amount is "9.99").
        while len(groups) > 1 and len(amount.group()) == 3 and len(groups[-1].group()) <= 3:
            amount = groups.pop()
        digits = sum(g.end() - g.start() for g in groups)
    if digits > 12:
        # An account and then a card: the account is the groups before the card's.
        for k in range(len(groups) - 1, 0, -1):
            before = sum(g.end() - g.start() for g in groups[:k])
            if 6 <= before <= 12 and _card_why("".join(g.group() for g in groups[k:])):
                end = start + groups[k - 1].end()
                ctx.add(_P_LABELLED, start, end, "account", "rule:account", "digits after an account label")
                return
    if 6 <= digits <= 12:
        end = start + groups[-1].end()
    elif 6 <= len(groups[0].group()) <= 12:
        end = start + groups[0].end()  # "account 12345678 12-34-56": the first group is the account
    else:
        return
    ctx.add(_P_LABELLED, start, end, "account", "rule:account", "digits after an account label")


def _labelled_iban(ctx: _Context, start: int, value: str) -> None:
    """An IBAN that fails its check digits is still hidden after an IBAN label (a typo is still PII)."""
    if _iban_valid(_compact(value)):
        return  # the IBAN detector reports it
    end = start + _iban_extent(value)
    ctx.add(
        _P_LABELLED, start, end, "iban", "rule:iban", "IBAN-shaped after an IBAN label, check digits fail"
    )


def _iban_extent(value: str) -> int:
    """Where an IBAN typed after its label ends in ``value``: its first group and the groups of at
    most four characters after it, not a lower-case word ("and"), up to its country's IBAN length
    (34 for a country without one: "IBAN DE89370400440532013000 DOB ..." ends before "DOB")."""
    end = 0
    count = 0
    most = _iban_length(value[:2].upper()) or 34
    for i, group in enumerate(_ALNUM_RUN.finditer(value)):
        size = len(group.group())
        if i > 0 and (size > 4 or (group.group().isalpha() and group.group().islower()) or count >= most):
            break
        count += size
        if count > 34:
            break
        end = group.end()
    return end


#: python-stdnum validators by detector name.
_VALIDATORS: dict[str, ModuleType] = {
    "stdnum.es.dni": std_dni,
    "stdnum.es.nie": std_nie,
    "stdnum.cn.ric": std_ric,
    "stdnum.it.codicefiscale": std_codicefiscale,
    "stdnum.mx.curp": std_curp,
    "stdnum.fr.nir": std_nir,
    "stdnum.ch.ssn": std_ch_ssn,
    "stdnum.kr.rrn": std_rrn,
    "stdnum.br.cpf": std_cpf,
    "stdnum.in_.aadhaar": std_aadhaar,
    "stdnum.pl.pesel": std_pesel,
    "stdnum.tr.tckimlik": std_tckimlik,
    "stdnum.de.idnr": std_idnr,
    "stdnum.jp.in_": std_jp_in,
    "stdnum.nl.bsn": std_bsn,
    "stdnum.ru.inn": std_inn,
    "stdnum.us.ssn": std_ssn,
    "stdnum.us.itin": std_itin,
    "stdnum.be.nn": std_be_nn,
    "stdnum.cl.rut": std_cl_rut,
    "stdnum.ro.cnp": std_ro_cnp,
    "stdnum.fi.hetu": std_fi_hetu,
    "stdnum.ca.sin": std_ca_sin,
    "stdnum.se.personnummer": std_se_pnr,
    "stdnum.dk.cpr": std_dk_cpr,
    "stdnum.no.fodselsnummer": std_no_fnr,
    "stdnum.in_.pan": std_in_pan,
    "stdnum.ie.pps": std_ie_pps,
    "stdnum.au.tfn": std_au_tfn,
    "stdnum.za.idnr": std_za_idnr,
    # python-stdnum has none for these two: own modules in its shape, the published checks
    "bot.privacy.sg_nric": sg_nric,
    "bot.privacy.hk_hkid": hk_hkid,
}
#: Identity numbers tried after an identity-number label, in order, with their compact lengths.
_ID_LENGTHS = (
    ("stdnum.es.dni", (9,)),
    ("stdnum.es.nie", (9,)),
    ("stdnum.cn.ric", (18,)),
    ("stdnum.it.codicefiscale", (16,)),
    ("stdnum.mx.curp", (18,)),
    ("stdnum.fr.nir", (15,)),
    ("stdnum.ch.ssn", (13,)),
    ("stdnum.kr.rrn", (13,)),
    ("stdnum.br.cpf", (11,)),
    ("stdnum.in_.aadhaar", (12,)),
    ("stdnum.pl.pesel", (11,)),
    ("stdnum.tr.tckimlik", (11,)),
    ("stdnum.de.idnr", (11,)),
    ("stdnum.jp.in_", (12,)),
    ("stdnum.nl.bsn", (9,)),
    ("stdnum.ru.inn", (10, 12)),
    ("stdnum.us.ssn", (9,)),
    ("stdnum.us.itin", (9,)),
    ("stdnum.ro.cnp", (13,)),
    ("stdnum.be.nn", (11,)),
    ("stdnum.fi.hetu", (10,)),
    ("stdnum.se.personnummer", (10, 12)),
    ("stdnum.dk.cpr", (10,)),
    ("stdnum.no.fodselsnummer", (11,)),
    ("stdnum.ca.sin", (9,)),
    ("stdnum.cl.rut", (8, 9)),
    ("stdnum.in_.pan", (10,)),
    ("stdnum.ie.pps", (8, 9)),
    ("stdnum.au.tfn", (8, 9)),
    ("stdnum.za.idnr", (13,)),
    ("bot.privacy.sg_nric", (9,)),
    ("bot.privacy.hk_hkid", (8, 9)),
)


@lru_cache(maxsize=8192)
def _valid(name: str, value: str) -> bool:
    """Whether python-stdnum's ``name`` validator accepts ``value``; a validator that fails says no."""
    try:
        if name == "stdnum.fi.hetu" and len(value) == 10:  # the century sign is not a letter or digit
            return any(_VALIDATORS[name].is_valid(value[:6] + sign + value[6:]) for sign in "-A+")
        return bool(_VALIDATORS[name].is_valid(value))
    except Exception:
        return False


@lru_cache(maxsize=4096)
def _national_id(compact: str) -> str | None:
    """The first python-stdnum module that validates ``compact`` (already upper-case alphanumerics)."""
    for name, lengths in _ID_LENGTHS:
        if len(compact) in lengths and _valid(name, compact):
            return name
    return None


def _labelled_id(ctx: _Context, start: int, value: str) -> None:
    """After an identity-number label: the groups that hold digits, whether or not a checksum matches
    (a typo in an identity number is still one); the checksum only names the detector."""
    pan = _PAN_SHAPE.match(value)
    if pan:  # "PAN card: AQTPM 7302 K": India's PAN typed in groups
        why = "PAN shape after an ID label"
        ctx.add(_P_LABELLED, start, start + pan.end(), "national_id", "rule:national_id", why)
        return
    nino = _NINO_SHAPE.match(value)
    if nino:  # "national insurance number QQ 12 34 56 C": the shape, whatever its prefix letters
        ctx.add(
            _P_LABELLED, start, start + nino.end(), "nino", "rule:nino", "NI-number shape after an ID label"
        )
        return
    groups = list(_ALNUM_RUN.finditer(value))
    # "HKID: A 123456 (3)": an identity number's letters typed apart from its digits
    lead = int(
        len(groups) > 1 and bool(_ID_LETTERS.fullmatch(groups[0].group())) and groups[1].group()[0].isdigit()
    )
    k = lead
    while k < len(groups) and any(c.isdigit() for c in groups[k].group()):
        k += 1
    if k == lead:
        k = 0
    if not k:
        return
    if k < len(groups) and _CHECK_CHARACTER.fullmatch(value, groups[k - 1].end(), groups[k].end()):
        k += 1  # "48302157-H", "AB987654(A)": the check letter is part of the number
    for j in range(k, 0, -1):
        name = _national_id("".join(g.group() for g in groups[:j]).upper())
        if name and (j == k or sum(c.isdigit() for g in groups[j:k] for c in g.group()) < 3):
            # ("DNI 12345678Z 12": the two digits after the number are not part of it)
            why = "valid number after an ID label"
            ctx.add(_P_LABELLED, start, start + _id_end(value, groups[j - 1]), "national_id", name, why)
            return
    digits = sum(c.isdigit() for g in groups[:k] for c in g.group())
    # ("Reisepassnummer C4J7F2L9X": one group of letters and digits, as passports are)
    if digits >= 5 or (k == 1 and 6 <= len(groups[0].group()) <= 12 and digits >= 3):
        why = "number after an ID label, no checksum matched"
        end = start + _id_end(value, groups[k - 1])
        ctx.add(_P_LABELLED, start, end, "national_id", "rule:national_id", why)


def _id_end(value: str, last: re.Match[str]) -> int:
    """Where an identity number ending with the group ``last`` ends in ``value``: after the closing
    bracket of a check character typed in brackets ("A123456(3)", "A123456[3]")."""
    end = last.end()
    if end - last.start() == 1:
        for opening, closing in ("()", "[]"):
            if value.startswith(closing, end) and value.startswith(opening, last.start() - 1):
                return end + 1
    return end


_ALNUM_RUN = re.compile(r"[0-9A-Za-z]+")
#: The letters an identity number may begin with, typed apart from its digits (Hong Kong's one or
#: two, Singapore's one).
_ID_LETTERS = re.compile(r"[A-Za-z]{1,3}")
#: A check letter after an identity number: "-H", " Z" (a lower-case letter after a space is a word),
#: Hong Kong's "(A)" (or "[A]").
_CHECK_CHARACTER = re.compile(r"[\-./]?[A-Za-z]|[ ][A-Z]|[ ]?[(\[][Aa]")
_PAN_SHAPE = re.compile(
    r"[A-Za-z]{5}[ ][0-9]{4}[ ]?[A-Za-z](?![0-9A-Za-z])|[A-Za-z]{5}[0-9]{4}[ ][A-Za-z](?![0-9A-Za-z])"
)
_NINO_SHAPE = re.compile(
    r"[A-Za-z]{2}[ \-]?[0-9]{2}[ \-]?[0-9]{2}[ \-]?[0-9]{2}[ \-]?[A-Da-d](?![0-9A-Za-z])"
)


# --------------------------------------------------------------------------------------------------
# E-mail addresses
# --------------------------------------------------------------------------------------------------

_EMAIL_DOMAIN = regex.compile(
    r"@(?:[\p{L}\p{N}](?:[\p{L}\p{M}\p{N}\-]{0,61}[\p{L}\p{M}\p{N}])?\.){1,8}"
    r"(?:[A-Za-z]{2,63}+(?![A-Za-z0-9\-])"
    r"|xn--[A-Za-z0-9\-]{1,59}+(?![A-Za-z0-9\-])"
    # Han top-level domains are two characters but for these few: the CJK text after an address is
    # not part of it ("用户@例子.中国的邮箱")
    r"|新加坡|我爱你|嘉里大酒店|\p{Han}{2}"
    r"|[\p{Hiragana}\p{Katakana}]{2,12}+"
    r"|\p{Cyrillic}{2,63}+|\p{Greek}{2,63}+|\p{Arabic}{2,63}+|\p{Hebrew}{2,63}+"
    r"|[\p{Devanagari}\p{M}]{2,63}+|[\p{Thai}\p{M}]{2,63}+|\p{Hangul}{2,63}+)"
)
_LOCAL_SYMBOLS = r"\p{M}\p{N}._%+\-'"
_SCRIPT_OF = regex.compile(
    r"(?P<cjk>[\p{Han}\p{Hiragana}\p{Katakana}])|(?P<latin>\p{Latin})|(?P<cyrillic>\p{Cyrillic})"
    r"|(?P<greek>\p{Greek})|(?P<arabic>\p{Arabic})|(?P<hebrew>\p{Hebrew})|(?P<devanagari>\p{Devanagari})"
    r"|(?P<hangul>\p{Hangul})|(?P<thai>\p{Thai})"
)
_LOCAL_BY_SCRIPT = {
    name: regex.compile(rf"(?r)[{letters}{_LOCAL_SYMBOLS}]{{1,64}}+")
    for name, letters in (
        ("cjk", r"\p{Han}\p{Hiragana}\p{Katakana}"),
        ("latin", r"\p{Latin}"),
        ("cyrillic", r"\p{Cyrillic}"),
        ("greek", r"\p{Greek}"),
        ("arabic", r"\p{Arabic}"),
        ("hebrew", r"\p{Hebrew}"),
        ("devanagari", r"\p{Devanagari}"),
        ("hangul", r"\p{Hangul}"),
        ("thai", r"\p{Thai}"),
        ("other", r"\p{L}"),
    )
}
# Where a CJK sentence glued to an all-CJK local part ends: "我的邮箱是用户@例子.中国".
_CJK_LABEL_END = "是为為はがを：:"


#: "@" followed by a first domain label and a dot: where the e-mail pattern is worth trying.
_AT_DOMAIN = re.compile(r"@(?=[^\s@.]{1,63}\.)")


class _Credential(NamedTuple):
    name: str
    #: A literal every match contains (in lower case for a pattern that ignores case): the pattern is
    #: only run on texts holding it.
    hint: str
    pattern: re.Pattern[str]
    #: Whether the pattern ignores case (read once here: testing ``pattern.flags & re.IGNORECASE``
    #: per message built an enum member each time, 40 % of redacting an ordinary message).
    folded: bool


def _token(name: str, hint: str, pattern: str, flags: int = 0) -> _Credential:
    compiled = re.compile(pattern, flags)
    return _Credential(name, hint, compiled, bool(compiled.flags & re.IGNORECASE))


#: Access tokens and keys in the formats their issuers document. Each pattern starts with its
#: literal, then checks the character before it (a look-behind of fixed width), so a match is tried
#: once per occurrence of the literal and takes at most its bounded length: linear on any input. The
#: group ``v``, where there is one, is what is hidden; else the whole match.
_CREDENTIALS: tuple[_Credential, ...] = (
    # Telegram Bot API: "<bot id>:<35 characters>" (34 in the documentation's examples), mixed case
    # with a digit, also inside a request URL (".../bot<token>/..."). Not "20261130:PAYMENT_...".
    _token(
        "telegram_bot_token",
        ":",
        r"(?<![0-9])[0-9]{6,12}:(?=[A-Za-z0-9_-]{0,34}[A-Z])(?=[A-Za-z0-9_-]{0,34}[a-z])"
        r"(?=[A-Za-z0-9_-]{0,34}[0-9])[A-Za-z0-9_-]{34,35}(?![A-Za-z0-9_-])",
    ),
    # Slack: bot, user, browser-session, refresh and configuration tokens (a digit after the dash),
    # and app-level tokens.
    _token(
        "slack_token",
        "xox",
        r"xox[abcpre]-(?<![A-Za-z0-9]xox.-)[0-9][A-Za-z0-9-]{9,250}+",
    ),
    _token("slack_app_token", "xapp-", r"xapp-(?<![A-Za-z0-9]xapp-)[0-9]-[A-Za-z0-9-]{10,250}+"),
    # JSON Web Token (and a JWE's first parts): base64url header and payload of a JSON object
    # ("eyJ" is '{"'), then a signature, possibly empty (an unsigned token).
    _token(
        "jwt",
        "eyJ",
        r"eyJ(?<![A-Za-z0-9-]eyJ)[A-Za-z0-9_-]{5,4000}+\.eyJ[A-Za-z0-9_-]{2,8000}+\.[A-Za-z0-9_-]{0,2000}+",
    ),
    # ... and a token of the same shape whose payload is not JSON (a JWE's encrypted key, or a
    # header pasted before some other signed content): a JSON header and two more base64url parts
    # of at least 20 characters each.
    _token(
        "jwt",
        "eyJ",
        r"eyJ(?<![A-Za-z0-9-]eyJ)[A-Za-z0-9_-]{5,4000}+\.[A-Za-z0-9_-]{20,8000}+\.[A-Za-z0-9_-]{20,2000}+",
    ),
    # AWS access key id (base32: it holds a digit).
    _token(
        "aws_access_key_id",
        "A",
        r"A(?:KIA|SIA|GPA|IDA|ROA|NPA|NVA|IPA)(?<![A-Z0-9]A...)(?=[A-Z0-9]{0,15}[0-9])[A-Z0-9]{16}"
        r"(?![A-Za-z0-9])",
    ),
    # GitHub personal access (classic and fine-grained), OAuth, user-to-server, server-to-server and
    # refresh tokens.
    _token("github_token", "gh", r"gh[pousr]_(?<![A-Za-z0-9]gh._)[A-Za-z0-9]{36,255}+"),
    _token("github_token", "github_pat_", r"github_pat_(?<![A-Za-z0-9]github_pat_)[A-Za-z0-9_]{22,255}+"),
    # Stripe secret and restricted keys; Google API keys.
    _token(
        "stripe_key", "k_", r"[sr]k_(?:live|test)_(?<![A-Za-z0-9][sr]k_(?:live|test)_)[A-Za-z0-9]{16,255}+"
    ),
    # Stripe webhook signing secret.
    _token("stripe_webhook_secret", "whsec_", r"whsec_(?<![A-Za-z0-9]whsec_)[A-Za-z0-9]{24,255}+"),
    _token("google_api_key", "AIza", r"AIza(?<![A-Za-z0-9_-]AIza)[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])"),
    # A PEM or PGP private key, whole (its lines may be escaped, "\n", as in a JSON key file).
    _token(
        "private_key",
        "PRIVATE KEY",
        # (an atomic group: Python 3.11.2's possessive quantifier on an alternation never matches)
        r"-----BEGIN[ A-Z]{0,40} PRIVATE KEY(?: BLOCK)?-----(?>(?:[A-Za-z0-9+/=\s:,.\\]|-(?!----)){0,20000})"
        r"-----END[ A-Z]{0,40} PRIVATE KEY(?: BLOCK)?-----",
    ),
    # ... and one pasted without its END line (cut off, or the rest in another message): the header,
    # what follows it up to the first 40 characters of base64 (header lines such as "Proc-Type:
    # ...", at most 300 characters), the base64 lines (40 to 200 characters each, newlines escaped
    # or not), and a shorter last line holding a digit, "+", "/" or "=" (never a word of the
    # sentence after the key).
    _token(
        "private_key",
        "PRIVATE KEY",
        r"-----BEGIN[ A-Z]{0,40} PRIVATE KEY(?: BLOCK)?-----(?:[^-]|-(?!----)){0,300}?"
        r"(?>(?:(?:\s|\\[rn]){0,4}[A-Za-z0-9+/]{40,200}+){1,600})"
        r"(?:(?:\s|\\[rn]){0,4}(?=[A-Za-z0-9+/]{0,39}[0-9+/=])[A-Za-z0-9+/]{1,39}+={0,2}+(?![A-Za-z0-9+/=]))?",
    ),
    # A Slack incoming webhook (or workflow trigger) URL: its path is the secret (also with JSON's
    # escaped slashes, and on Slack's GovSlack host).
    _token(
        "slack_webhook",
        "hooks.slack",
        r"(?<![a-z0-9-])hooks\.slack(?:-gov)?\.com\\?/"
        r"(?P<v>(?:services|workflows|triggers)(?:\\?/[a-z0-9_-]{1,100}+){2,6})",
        re.IGNORECASE,
    ),
    # A password in a URL's user information (RFC 3986 3.2.1: "user:password@host", as in a
    # database or broker connection URL): hidden whatever its length, up to the last "@" before the
    # host (an unescaped "@" in it too); the user name (an e-mail address, say) stays. Characters no
    # URL holds (quotes, angle brackets...) end it, so JSON or a log line after a port is not taken.
    _token(
        "url_password",
        "://",
        r"://[^\s:/?#\"<>\\^`{|}]{0,128}:(?P<v>[^\s/?#\"<>\\^`{|}]{1,4096}(?<!@))@",
    ),
    # An AWS secret access key (40 characters of base64) after its name, as in a credentials file,
    # an environment variable, a command-line option, JSON or STS XML ("aws_secret_access_key =",
    # "--aws-secret-access-key", "Secret access key:", "SecretAccessKey>", "AWS_SECRET_KEY=") ...
    _token(
        "aws_secret_access_key",
        "ecret",
        r"(?<![a-z])(?:aws[-_ ]?)?secret[-_ ]?(?:access[-_ ]?)?key[\"']?[ \t]{0,16}(?:[:=>][ \t]{0,16})?"
        r"[\"']?(?P<v>[a-z0-9/+]{40})(?![a-z0-9/+=])",
        re.IGNORECASE,
    ),
    # ... or beside its access key id, as in the console's CSV download ("AKIA...,<secret>").
    _token(
        "aws_secret_access_key",
        "A",
        r"A(?:KIA|SIA)(?<![A-Z0-9]A...)[A-Z0-9]{16}[ \t]{0,3}[,;|\t ][ \t]{0,3}"
        r"(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
    ),
    # An HTTP bearer token's value (the scheme is case-insensitive, RFC 7235): 20+ characters with a
    # digit.
    _token(
        "bearer_token",
        "bearer",
        r"(?<![A-Za-z])bearer[ ]{1,3}"
        r"(?P<v>(?=[A-Za-z0-9._~+/=-]{0,2000}?[0-9])[A-Za-z0-9._~+/-]{20,2000}+=*+)",
        re.IGNORECASE,
    ),
    # HTTP Basic credentials (base64 of "user:password", RFC 7617) after "Authorization: Basic".
    _token(
        "basic_credentials",
        "authorization",
        # a capital or digit after the first character: not a word ("Basic Authentication")
        r"(?<![A-Za-z])authorization[\"']?[ ]{0,3}[:=][ ]{0,3}[\"']?[ ]{0,3}basic[ ]{1,3}"
        r"(?P<v>[A-Za-z0-9+/](?=[A-Za-z0-9+/]{0,2000}?(?-i:[A-Z0-9+/]))[A-Za-z0-9+/]{7,2000}+=*+)(?![A-Za-z0-9+/=])",
        re.IGNORECASE,
    ),
)
#: Stands in for a credential in the text the other detectors read: no detector takes it for part of
#: a value, so the numbers beside a token are read as they would be beside a placeholder.
_MASK = "\x00"


#: A key, secret or token after its name, in the forms configuration, code and HTTP use ("API key:
#: c2d0...", "client_secret=7f3c...", 'refresh_token: "rt_9Xk2..."', "x-api-key: 7Fq2-Kd9P-...",
#: "SENDGRID_API_KEY=SG.3Sc...", "webhook secret whsec_UOLc..."): a value of 16-200 characters of
#: letters with digits, as keys are, not a word ("the token is invalid", "my api key is abc").
_LABELLED_KEY = regex.compile(
    # at a word's start, or after "_" or "-" ("SENDGRID_API_KEY", "x-api-key")
    # (never "token" or "secret" alone: "loyalty token ABC123DEF456GHI7", "Trade secret NDA-2024-...")
    r"(?:(?<=[_\-])|(?<![\p{L}\p{N}_\-]))(?:(?:api|access|signing|subscription|secret)[_\- ]?keys?"
    r"|(?:client|api|webhook|signing|app)[_\- ]secret"
    r"|(?:access|refresh|auth|bearer|session|id|api)[_\- ]token|private[_\- ]key|x-api-key|passkey)"
    r"(?:[ ]\((?:live|test|prod|sandbox)\))?"
    r"[\"'`]?(?:[ ]{0,3}(?:[:=\-]|is:?|was:?)[ ]{0,3}|[ ]{1,3})[\"'`]?"
    # a key's characters, at least one digit and one letter among them, read whole (however long:
    # a value cut short would leave its tail for the other detectors, and redacting twice would differ)
    r"(?P<v>(?=[A-Za-z0-9+/_.~%\-]{0,4096}?[0-9])(?=[A-Za-z0-9+/_.~%\-]{0,4096}?[A-Za-z])"
    r"(?<![A-Za-z0-9+/_.~%\-])[A-Za-z0-9+/_.~%\-]{16,4096}+=*)(?![A-Za-z0-9+/_.~%\-=])",
    regex.IGNORECASE,
)
#: A long random value after a bare "token" or "secret": at least 24 characters with lower- and
#: upper-case letters and digits, as generated keys are ("the secret rzp_secret_yV4J1TQt7frR..."),
#: where references are in one case ("loyalty token ABC123DEF456GHI7", "Token TKN20240115000123")
#: and a blockchain address starts with 0x ("USDT token 0xdAC17F958D2ee523a2206206994597C13D831ec7").
_BARE_KEY = regex.compile(
    r"(?<![\p{L}\p{N}_\-])(?i:token|secret)[\"'`]?(?:[ ]{0,3}(?:[:=]|(?i:is|was))[ ]{0,3}|[ ]{1,3})[\"'`]?"
    r"(?P<v>(?!0x)(?=[A-Za-z0-9+/_.~%\-]{0,4096}?[0-9])(?=[A-Za-z0-9+/_.~%\-]{0,4096}?[a-z])"
    r"(?=[A-Za-z0-9+/_.~%\-]{0,4096}?[A-Z])[A-Za-z0-9+/_.~%\-]{24,4096}+=*)(?![A-Za-z0-9+/_.~%\-=])"
)
#: An AWS secret access key (40 characters of base64) written after its access key id: "AKIA... / +fT3p...".
_AWS_SECRET_AFTER_ID = regex.compile(r"[ ]{0,3}[/:,;|][ ]{0,3}(?P<v>[A-Za-z0-9+/]{40})(?![A-Za-z0-9+/=])")


#: The words a key's name ends with, and how far before one its name may start (characters).
_KEY_WORDS = ("key", "secret", "token")
_KEY_NAME_REACH = 16


def _labelled_keys(text: str, low: str) -> Iterator[regex.Match[str]]:
    """:data:`_LABELLED_KEY` and :data:`_BARE_KEY` matches, tried only at the word starts just before
    each "key", "secret" or "token" (a scan of the whole text costs the same on any text, and a search
    of a window round each word re-reads the windows: 85 ms for 4,000 characters of "token=")."""
    occurrences = sorted(at for word in _KEY_WORDS for at in _positions(low, word))
    if not occurrences:
        return
    starts = [m.start() for m in _WORD_START.finditer(text)]
    tried: set[int] = set()
    done = -1  # the end of the last value found: the words inside it are not names
    for at in occurrences:
        if at < done:
            continue
        i = bisect.bisect_left(starts, at - _KEY_NAME_REACH)
        while i < len(starts) and starts[i] <= at:
            start = starts[i]
            i += 1
            if start in tried:
                continue
            tried.add(start)
            m = _LABELLED_KEY.match(text, start) or _BARE_KEY.match(text, start)
            if m is not None:
                yield m
                done = m.end()
                break


#: Where a word starts: a letter after anything but a letter or digit ("_" and "-" start one).
_WORD_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]")


def _positions(text: str, word: str) -> Iterator[int]:
    at = text.find(word)
    while at >= 0:
        yield at
        at = text.find(word, at + len(word))


def _detect_credentials(ctx: _Context) -> None:
    """Access tokens and keys (:data:`_CREDENTIALS`): a bot's own token in a logged URL or error,
    or a key a customer or operator pasted, is hidden whole as ``[CREDENTIAL]``, ahead of any other
    kind (a PIN label before a bot token does not leave the token's tail). The other detectors then
    read the text with each token masked."""
    text = ctx.text
    low: str | None = None  # lower-cased once, if a case-insensitive pattern asks
    spans: list[tuple[int, int]] = []
    for credential in _CREDENTIALS:
        if credential.folded:
            low = text.lower() if low is None else low
            if credential.hint not in low:
                continue
        elif credential.hint not in text:
            continue
        for m in credential.pattern.finditer(text):
            start, end = m.span("v") if "v" in credential.pattern.groupindex else m.span()
            why = f"{credential.name.replace('_', ' ')} in its issuer's format"
            ctx.add(_P_CREDENTIAL, start, end, "credential", f"rule:{credential.name}", why)
            spans.append((start, end))
    low = text.lower() if low is None else low
    for m in _labelled_keys(text, low):
        if not any(a <= m.start("v") < b for a, b in spans):
            why = "a key or token after its name"
            ctx.add(_P_CREDENTIAL, m.start("v"), m.end("v"), "credential", "rule:labelled_key", why)
            spans.append(m.span("v"))
    for _, end in [s for s in spans if text.startswith(("AKIA", "ASIA"), s[0])]:
        m = _AWS_SECRET_AFTER_ID.match(text, end)
        if m is not None:
            ctx.add(
                _P_CREDENTIAL,
                m.start("v"),
                m.end("v"),
                "credential",
                "rule:labelled_key",
                "an AWS secret after its key id",
            )
            spans.append(m.span("v"))
    if spans:
        masked = list(text)
        for start, end in spans:
            masked[start:end] = _MASK * (end - start)
        ctx.text = "".join(masked)


#: A dot written out in brackets, glued to the words it joins, ending where the later word starts.
_DOT_GLUED_BEFORE = re.compile(r"[\[({]dot[\])}]\Z", re.IGNORECASE)


#: India's UPI payment address (a "VPA": ``name@handle``, no top-level domain), with the handle of
#: a payment app or bank from NPCI's published list of UPI handles (the common ones): it names the
#: customer's bank account as an account number does ("mera UPI ID ravi.sharma88@okaxis hai").
_UPI_ID = re.compile(
    r"(?<![A-Za-z0-9._\-])[A-Za-z0-9][A-Za-z0-9._\-]{1,63}@"
    r"(?:ok(?:axis|hdfcbank|icici|sbi)|ybl|ibl|axl|apl|yapl|paytm|pt(?:axis|hdfc|sbi|yes)|upi|axisbank"
    r"|hdfcbank|icici|sbi|kotak|barodampay|pnb|unionbank|idfcbank|indus|federal|rbl|yesbank|aubank"
    r"|airtel|jio|freecharge|fbl|abfspay|ikwik|waaxis|wahdfcbank|waicici|wasbi|naviaxis|superyes"
    r"|okbizaxis|axisb|kmbl|idfcfirst|cnrb|boi|rapl|yescred|jupiteraxis|pingpay)"
    r"(?![A-Za-z0-9_@\-]|\.[A-Za-z])",
    re.IGNORECASE,
)


def _detect_emails(ctx: _Context) -> None:
    text = ctx.text
    ascii_text = text.isascii()
    for at_sign in _AT_DOMAIN.finditer(text):
        m = _EMAIL_DOMAIN.match(text, at_sign.start())
        if m is None:
            continue
        at = m.start()
        script = "latin"
        # (only ASCII before the "@": the nearest letter, if any, is Latin)
        for i in () if ascii_text else range(at - 1, max(-1, at - 65), -1):
            ch = text[i]
            if ch.isalpha():
                found = _SCRIPT_OF.match(ch)
                script = found.lastgroup if found else "other"
                break
            if not (ch.isdigit() or ch in "._%+-'" or unicodedata.category(ch).startswith("M")):
                break
        local = _LOCAL_BY_SCRIPT[script].match(text, max(0, at - 64), at)
        if local is None:
            continue
        start = local.start()
        if script == "cjk":
            cut = max(text.rfind(c, start, at) for c in _CJK_LABEL_END)
            if 0 <= cut < at - 1:
                start = cut + 1
        while start < at and not (text[start].isalnum() or text[start] == "_"):
            start += 1
        # Words of the local part joined by a dot written out ("mary(dot)jones@example.co.uk").
        while (joint := _DOT_GLUED_BEFORE.search(text, max(0, start - 5), start)) is not None:
            word = joint.start()
            while word > 0 and text[word - 1] in _LOCAL_CHARS and joint.start() - word < 64:
                word -= 1
            if word == joint.start():
                break
            start = word
        if start >= at or m.end() - start > 254:
            continue
        tld = text[text.rfind(".", at, m.end()) + 1 : m.end()]
        why = (
            "address with a Unicode local part or domain"
            if not text[start : m.end()].isascii()
            else "address"
        )
        ctx.add(_P_EMAIL, start, m.end(), "email", "rule:email", f"{why}, domain .{tld.lower()}")


# An address written so that it is not one, as customers do to dodge filters or by a slip:
# "sarah.wilson[at]outlook.com", "john dot smith at gmail dot com", "john.smith @gmail.com",
# "john.smith@gmail,com". The domain must end in a common top-level domain; after a bare " at " the
# address must also be spelt out ("dot") or have a dot, digit or underscore in its local part, so
# "I shop at tesco.com" stays a sentence.
_DOT = r"(?:[ ]?(?:\.|,|[\[({][ ]?dot[ ]?[\])}])[ ]?|[ ](?:dot|point|punto|punkt|ponto)[ ])"
_COMMON_TLDS = frozenset(
    [
        "com",
        "net",
        "org",
        "edu",
        "gov",
        "mil",
        "int",
        "info",
        "biz",
        "io",
        "co",
        "me",
        "us",
        "uk",
        "ie",
        "de",
        "fr",
        "es",
        "it",
        "nl",
        "be",
        "at",
        "ch",
        "pt",
        "pl",
        "se",
        "no",
        "dk",
        "fi",
        "in",
        "ca",
        "au",
        "nz",
        "za",
        "sg",
        "hk",
        "jp",
        "cn",
        "kr",
        "br",
        "mx",
        "ar",
        "ru",
        "tr",
        "ae",
    ]
)
_TLD = "(?:" + "|".join(sorted(_COMMON_TLDS)) + ")"
_OBFUSCATED_DOMAIN = re.compile(
    rf"[a-z0-9\-]{{1,63}}+(?:{_DOT}[a-z0-9\-]{{1,63}}+){{0,3}}{_DOT}{_TLD}(?![\w@])", re.IGNORECASE
)
#: Where such an address is joined: " at ", "[at]", "(at)", " @", "@ ", or "@" before "domain,tld";
#: only before a domain ending in a common top-level domain (checked in the pattern: no work is done
#: in Python for the "at" of a sentence).
_OBFUSCATED_AT = re.compile(
    # (the sign's name in French, Spanish and Portuguese, Italian, German: "camille point durand
    # arobase example point fr")
    r"(?: at | (?:arobase|arroba|chiocciola|klammeraffe) |[\[({] ?at ?[\])}] ?| @ ?|@ "
    r"|@(?=[a-z0-9\-]{1,63},))"
    rf"(?={_OBFUSCATED_DOMAIN.pattern})",
    re.IGNORECASE,
)
#: Addresses out of shape are looked for in texts up to this long (a customer's message; the search
#: costs about 1 ms per 10,000 characters of prose), at most :data:`OBFUSCATED_BUDGET` per text.
OBFUSCATED_MAX_CHARS = 4_000
OBFUSCATED_BUDGET = 64
#: After a bare " at ", a local part with one of these is an address's, not a word of the sentence.
_LOCAL_MARK = re.compile(r"[._0-9]")
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")
_NOT_A_LOCAL_PART = frozenset(
    [
        "i",
        "me",
        "we",
        "us",
        "you",
        "him",
        "her",
        "them",
        "it",
        "is",
        "was",
        "are",
        "were",
        "be",
        "been",
        "am",
        "stay",
        "stayed",
        "shop",
        "shopped",
        "look",
        "looked",
        "meet",
        "met",
        "arrive",
        "arrived",
        "here",
        "there",
        "home",
        "work",
        "live",
        "lived",
    ]
)


#: A dot written out between two words of a local part, ending where the later word starts:
#: " dot ", "(dot)", "[dot]", "{dot}" ("john(dot)smith(at)gmail(dot)com").
_DOT_BEFORE = re.compile(
    r"(?:[ ](?:dot|point|punto|punkt|ponto)[ ]|[ ]?[\[({][ ]?dot[ ]?[\])}][ ]?)\Z", re.IGNORECASE
)


def _local_start(text: str, end: int) -> int | None:
    """Where the local part ending at ``end`` starts (up to 64 characters, and up to three more
    words joined by a dot written out, :data:`_DOT_BEFORE`), or None when there is none or it runs
    on (glued to more text)."""
    start = end
    for _ in range(4):
        j = start
        while j > 0 and start - j < 64 and text[j - 1] in _LOCAL_CHARS:
            j -= 1
        if j == start or (j > 0 and (text[j - 1] in _LOCAL_CHARS or text[j - 1] == "@")):
            return None if start == end else start
        start = j
        joint = _DOT_BEFORE.search(text, max(0, start - 9), start)
        if joint is None:
            break
        start = joint.start()
    while start < end and not (text[start].isalnum() or text[start] == "_"):
        start += 1
    return start if start < end else None


_AMOUNT = re.compile(r"[0-9][0-9.,]*")


def _detect_obfuscated_emails(ctx: _Context) -> None:
    """Addresses written out of shape (see :data:`_OBFUSCATED_AT`); bounded work per joint."""
    text = ctx.text
    if len(text) > OBFUSCATED_MAX_CHARS:
        return
    for n, at in enumerate(_OBFUSCATED_AT.finditer(text)):
        if n >= OBFUSCATED_BUDGET:
            break
        domain = _OBFUSCATED_DOMAIN.match(text, at.end())
        if domain is None:
            continue
        low = domain.group().lower()
        joint = at.group().strip().lower()
        end = at.start()
        if text[at.start()] in "[({" and end > 0 and text[end - 1] == " ":
            end -= 1  # "sarah [at] gmail.com"
        start = _local_start(text, end)
        if start is None:
            continue
        local = text[start:end].lower()
        if _AMOUNT.fullmatch(local):
            continue  # "$249.00 at BESTBUY.COM": an amount, and where it was spent
        if joint == "at" and (
            local in _NOT_A_LOCAL_PART
            or not (" dot " in f" {local} " or " dot " in low or _LOCAL_MARK.search(local))
        ):
            continue  # "I shop at tesco.com", "I was at home dot com"
        ctx.add(_P_EMAIL, start, domain.end(), "email", "rule:email", "address written out of shape")


# --------------------------------------------------------------------------------------------------
# IBANs and the letter-led identity numbers (NINO, NIE, codice fiscale, CURP)
# --------------------------------------------------------------------------------------------------

_IBAN_CANDIDATE = re.compile(r"[A-Za-z]{2}[0-9]{2}(?:(?:[ ]{0,2}[\-.]?[ ]{0,2})?[A-Za-z0-9]){11,30}+")
_LETTER_IDS = re.compile(
    r"[A-Za-z](?<![A-Za-z0-9][A-Za-z])(?:"
    r"(?P<nino>[A-Za-z][ \-]?[0-9]{2}[ \-]?[0-9]{2}[ \-]?[0-9]{2}[ \-]?[A-Da-d])"
    r"|(?P<nie>(?<=[XYZxyz])[ \-]?[0-9]{7}[ \-]?[A-Za-z])"
    r"|(?P<cf>[A-Za-z]{5}[0-9LMNP-Vlmnp-v]{2}[A-Za-z][0-9LMNP-Vlmnp-v]{2}[A-Za-z][0-9LMNP-Vlmnp-v]{3}[A-Za-z])"
    r"|(?P<curp>[A-Za-z]{3}[0-9]{6}[HMXhmx][A-Za-z]{5}[0-9A-Za-z][0-9])"
    r"|(?P<nric>(?<=[STFGMstfgm])[ \-]?[0-9]{7}[ \-]?[A-Za-z])"
    r"|(?P<hkid>[A-Za-z]?[0-9]{6}(?:[ ]?\([0-9Aa]\)|[ ]?\[[0-9Aa]\]|[0-9Aa]))"
    r")"
)
_LETTER_ID_END = re.compile(r"(?![A-Za-z0-9])")
_NINO_FIRST = set("ABCEGHJKLMNOPRSTWXYZ")
_NINO_SECOND = set("ABCEGHJKLMNPRSTWXYZ")
_NINO_BAD_PREFIX = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


@lru_cache(maxsize=128)
def _iban_bban(country: str) -> str | None:
    """The national part's format of ``country``'s IBAN in python-stdnum's registry ("8!n10!n" for
    Germany), None for a country without IBANs."""
    from stdnum import numdb

    try:
        props = numdb.get("iban").info(country)[0][1]
    except Exception:
        return None
    bban = props.get("bban") if isinstance(props, dict) else None
    return str(bban) if bban else None


@lru_cache(maxsize=128)
def _iban_length(country: str) -> int:
    """The IBAN length of ``country`` (0: no IBAN there)."""
    bban = _iban_bban(country)
    return 4 + sum(int(n) for n in re.findall(r"([0-9]+)!", bban)) if bban else 0


def _detect_letter_led(ctx: _Context) -> None:
    text = ctx.text
    pos = 0
    while (m := _IBAN_CANDIDATE.search(text, pos)) is not None:
        length = _iban_prefix(m.group())
        end = m.start() + length if length else 0
        country = text[m.start() : m.start() + 2].upper()
        if end:
            ctx.add(_P_IBAN, m.start(), end, "iban", "stdnum.iban", f"valid IBAN (mod 97, length), {country}")
            pos = end
        elif (m.start() == 0 or not text[m.start() - 1].isalnum()) and (length := _iban_shaped(m.group())):
            # A typo in an IBAN is still the customer's account ("sent money to DE89370400440532013001
            # (I think one digit is off)"): its country's length and national format, the check
            # digits failing. A labelled reference may hold one.
            why = f"IBAN-shaped for {country} (length and national format), check digits fail"
            ctx.add(_P_IBAN, m.start(), m.start() + length, "iban", "rule:iban", why, weak=_REFERENCE_ONLY)
            pos = m.start() + length
        else:
            pos = m.start() + 1
    for m in _LETTER_IDS.finditer(text):
        if not _LETTER_ID_END.match(text, m.end()):
            continue
        kind = m.lastgroup
        value = _compact(m.group())
        if kind == "nino":
            if value[0] in _NINO_FIRST and value[1] in _NINO_SECOND and value[:2] not in _NINO_BAD_PREFIX:
                ctx.add(_P_NINO, m.start(), m.end(), "nino", "rule:nino", "UK NI number, valid prefix")
        elif kind in ("nric", "hkid"):
            # A check character that matches 1 in 11 by chance: a labelled reference ("booking ref
            # AB1234567") keeps it. Without a label, an HKID counts only with its check digit in
            # brackets, as the card prints it: "promo code A1234563" and "flight A1234563" are codes.
            module = "bot.privacy.sg_nric" if kind == "nric" else "bot.privacy.hk_hkid"
            if kind == "hkid" and not any(c in m.group() for c in "(["):
                continue
            if _valid(module, value):
                why = "check character valid"
                ctx.add(_P_STRONG_ID, m.start(), m.end(), "national_id", module, why, weak=_REFERENCE_ONLY)
        else:
            name = _national_id(value)
            if name:
                ctx.add(_P_STRONG_ID, m.start(), m.end(), "national_id", name, "checksum valid")


@lru_cache(maxsize=1024)
def _iban_prefix(candidate: str) -> int:
    """How many characters of ``candidate`` make a valid IBAN (its country's length of letters and
    digits, separators included), 0 if none: what follows may be glued to it ("…3000abc")."""
    length = _iban_length(candidate[:2].upper())
    if not length:
        return 0
    count = 0
    for i, ch in enumerate(candidate):
        if ch.isalnum():
            count += 1
            if count == length:
                return i + 1 if _iban_valid(_compact(candidate[: i + 1])) else 0
    return 0


#: The shortest IBANs (Norway's 15, Belgium's 16 characters) are all digits after the country: as
#: short as product serials and vouchers ("voucher NO12 3456 7890 123"). A failing one is hidden only
#: from this length (the Netherlands', Denmark's and Finland's 18 up).
_IBAN_SHAPED_MIN = 18


@lru_cache(maxsize=1024)
def _iban_shaped(candidate: str) -> int:
    """How many characters of ``candidate`` make an IBAN of its country's length whose national part
    has that country's format (python-stdnum's registry: "8!n10!n" for Germany, "4!a6!n8!n" for the
    UK) but whose check digits fail, ungrouped or in groups of four; 0 if none, or when more letters or
    digits follow."""
    length = _iban_length(candidate[:2].upper())
    if length < _IBAN_SHAPED_MIN:
        return 0  # no IBAN there, or one as short as a serial number ("BE12345678901234")
    compact = ""
    for i, ch in enumerate(candidate):
        if ch.isalnum():
            compact += ch
            if len(compact) == length:
                end = i + 1
                break
    else:
        return 0
    if end < len(candidate) and candidate[end].isalnum():
        return 0  # glued to more: not this country's IBAN
    groups = _ALNUM_RUN.findall(candidate[:end])
    if len(groups) > 1 and any(len(g) != 4 for g in groups[:-1]):
        return 0  # an IBAN is written whole or in fours
    structure = _iban_structure(compact[:2].upper())
    return end if structure is not None and structure.match(compact[4:].upper()) else 0


@lru_cache(maxsize=128)
def _iban_structure(country: str) -> re.Pattern[str] | None:
    """The national part's format of ``country``'s IBAN as a pattern (:func:`_iban_bban`)."""
    bban = _iban_bban(country)
    if bban is None:
        return None
    classes = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Z0-9]"}
    body = re.sub(r"([0-9]+)!([nac])", lambda m: f"{classes[m.group(2)]}{{{m.group(1)}}}", bban)
    return re.compile(body + "$")


@lru_cache(maxsize=1024)
def _iban_valid(compact: str) -> bool:
    try:
        return bool(std_iban.is_valid(compact))
    except Exception:
        return False


# --------------------------------------------------------------------------------------------------
# Digit clusters: cards, phone numbers, numeric identity numbers, long numbers
# --------------------------------------------------------------------------------------------------

#: Six or more digits, with the separators digit groups have between them.
_CLUSTER = re.compile(r"[0-9](?:[ ./()+\-,_]{0,3}[0-9]){5}[0-9 ./()+\-,_]*")
_TWO_DIGITS = re.compile(r"[0-9]{2}")
_CARD = re.compile(
    rf"[0-9](?<![0-9][0-9])(?:"
    rf"[0-9]{{12,18}}"
    rf"|[0-9]{{3}}(?:{_SEP}[0-9]{{4}}){{3}}(?:{_SEP}[0-9]{{1,3}})?"
    rf"|[0-9]{{3}}{_SEP}[0-9]{{6}}{_SEP}[0-9]{{4,5}}"
    rf"|[0-9]{{3}}{_SEP}[0-9]{{4}}{_SEP}[0-9]{{4}}{_SEP}[0-9]{{1,3}}"
    rf"|[0-9]{{3}}{_SEP}[0-9]{{4}}{_SEP}[0-9]{{5}}"
    rf")(?![0-9])"
)
# Card numbers in other groupings, every group the same size and one separator throughout: single
# digits, pairs, triples ("4 5 3 4 ...", "44 35 50 ..."), 4-4-4-4 joined by "_" or ",", two halves
# (8 + 8, a number split over two lines) and the 6-digit BIN apart (6 + 10, 6 + 9). Luhn decides, and
# nothing that fails it is reported (these shapes are common for other numbers).
_XSEP = r"(?:[ ]{0,2}[-/._][ ]{0,2}|[ ]{1,3}|,)"
_CARD_OTHER = re.compile(
    r"(?<![0-9])(?<![0-9][-/._, ])(?:"
    rf"[0-9](?P<s1>{_XSEP})[0-9](?:(?P=s1)[0-9]){{11,17}}"
    rf"|[0-9]{{2}}(?P<s2>{_XSEP})[0-9]{{2}}(?:(?P=s2)[0-9]{{2}}){{4,7}}(?:(?P=s2)[0-9])?"
    rf"|[0-9]{{3}}(?P<s3>{_XSEP})[0-9]{{3}}(?:(?P=s3)[0-9]{{3}}){{2,4}}(?:(?P=s3)[0-9]{{1,2}})?"
    r"|[0-9]{4}(?P<s4>[_,])[0-9]{4}(?:(?P=s4)[0-9]{4}){1,3}(?:(?P=s4)[0-9]{1,3})?"
    r"|[0-9]{4}(?P<s5>[_,])[0-9]{6}(?P=s5)[0-9]{4,5}"
    rf"|[0-9]{{8}}{_XSEP}[0-9]{{8}}"
    rf"|[0-9]{{6}}{_XSEP}[0-9]{{9,10}}"
    rf")(?![0-9])(?!{_XSEP}[0-9])"
)
# A card number typed in a grouping of its own ("4487 5749 1186 252 0", "4 111 1111 1111 1111", "411
# 111 111 111 1111"): up to seven groups of 1-8 digits; the longest run of its groups from the first
# with 13-19 digits passing Luhn.
_CARD_LOOSE = re.compile(rf"(?<![0-9+])(?<![0-9+][-/. ])[0-9]{{1,8}}(?:{_SEP}[0-9]{{1,8}}){{1,6}}(?![0-9])")
# A card number with a letter typed for a digit in its groups, "4532 O151 1283 0309": O or o for 0, l or
# I for 1, only in a card's shape (the issuer digit first, a grouping of _CARD), every group holding a
# digit; hidden as a card when Luhn-valid once the letters are read as digits.
_LOOKALIKE_DIGITS = str.maketrans("OoIl", "0011")
#: Such a letter next to a digit: only around one is a card of that kind looked for.
_LOOKALIKE_NEAR_DIGIT = re.compile(r"[OoIl](?:(?<=[0-9][OoIl])|(?=[0-9]))")
#: How far a letter in such a card may be from its first digit: a card grouping is at most 19 digits
#: and 4 separators of up to 5 characters (39).
_LOOKALIKE_REACH = 50
_LD = "[0-9OoIl]"
_LOOKALIKE_CARD = re.compile(
    rf"[2-6](?<![0-9A-Za-z][2-6])(?:"
    rf"{_LD}{{12,18}}"
    rf"|{_LD}{{3}}(?:{_SEP}{_LD}{{4}}){{3}}(?:{_SEP}{_LD}{{1,3}})?"
    rf"|{_LD}{{3}}{_SEP}{_LD}{{6}}{_SEP}{_LD}{{4,5}}"
    rf"|{_LD}{{3}}{_SEP}{_LD}{{4}}{_SEP}{_LD}{{4}}{_SEP}{_LD}{{1,3}}"
    rf"|{_LD}{{3}}{_SEP}{_LD}{{4}}{_SEP}{_LD}{{5}}"
    rf")(?![0-9A-Za-z])"
)
_LOOKALIKE_GROUP = re.compile(r"[0-9OoIl]+")
_PSEP = r"(?:[ ]{0,2}[\-./][ ]{0,2}|[ ]{1,2})"
_PGROUP = r"(?:\([0-9]{1,5}\)|[0-9]{1,13}+)"
_PHONE = re.compile(
    # A "+" starts a number after another one ("+44 7911 123456 / +44 7911 654321"); digits do not
    # start one right after a number and a separator, nor after an area code in brackets ("(212)
    # 736-4321"): they are that number's groups.
    r"(?:(?<![0-9_+])(?=\+)|(?<![0-9A-Za-z_+])(?<![0-9][ ./\-])(?<![0-9][ ./\-]{2})(?<![0-9][ ./\-]{3})"
    r"(?<![0-9]\)[ ])(?<![0-9]\))"
    # a reference's digits after its capitals and a dash or slash: "PR-2025-118274", "FV/03/2025/118"
    # (a number with its trunk 0 or "+" is still one there: "TEL-07700 900123", "UK-07911 123456",
    # and one in North America's 3-3-4: "NY-212-555-0187")
    r"(?:(?<![A-Z]{2}[\-/])|(?=[0+(])(?![0-9]{1,4}/)|(?=[2-9][0-9]{2}-[0-9]{3}-[0-9]{4}(?![0-9\-]))))"
    r"(?=[+(0-9][0-9 ./()+\-]{6})"
    rf"(?:\+[ ]?|\(\+[0-9]{{1,3}}\)[ ]?)?{_PGROUP}(?:(?:{_PSEP}|(?<=\))[ ]?|[ ]?(?=\())(?:{_PGROUP})){{0,6}}+"
    # nor digits with one capital glued after them, as a Singapore company's UEN ends ("201912345K");
    # a word glued after a number leaves it one ("07911 123456pls", "123456x")
    rf"(?![0-9])(?![A-Z](?![A-Za-z]))(?!{_PSEP}[0-9])"
)
#: A run of more digit groups than one :data:`_PHONE` candidate takes (8 or more), as a list of
#: numbers makes: "07911 123 456 / 07911 654 321 / 07911 111 222", one per line. Read window by
#: window (:func:`_phone_run`).
_PHONE_RUN = re.compile(
    r"(?:(?<![0-9_+])\+[ ]?|(?<![0-9A-Za-z_+])(?<![0-9][ ./\-])(?<![0-9][ ./\-]{2})(?<![0-9][ ./\-]{3})"
    r"(?<![0-9]\)[ ])(?<![0-9]\)))"
    rf"(?=[(0-9])(?:{_PGROUP})(?:(?:{_PSEP}|(?<=\))[ ]?|[ ]?(?=\())(?:{_PGROUP})){{7,}}+"
    r"(?![0-9])"
)
#: The most digit groups one window of a long run holds (as :data:`_PHONE` does).
_PHONE_WINDOW = 7
_PHONE_TOKEN = re.compile(r"\([0-9]{1,5}\)|[0-9]+")
_NUMERIC_SHAPES = re.compile(
    r"[0-9](?<![0-9A-Za-z][0-9])(?:(?:"
    r"(?P<ric>[0-9]{5}[ ]?[0-9]{8}[ ]?[0-9]{3}[0-9Xx])"
    r"|(?P<nir>(?<=[1-478])[ ]?[0-9]{2}[ ]?[0-9]{2}[ ]?(?:[0-9]{2}|2[ABab])"
    r"[ ]?[0-9]{3}[ ]?[0-9]{3}[ ]?[0-9]{2})"
    r"|(?P<ahv>(?<=7)56[. ]?[0-9]{4}[. ]?[0-9]{4}[. ]?[0-9]{2})"
    r"|(?P<cpf>[0-9]{2}\.[0-9]{3}\.[0-9]{3}-[0-9]{2})"
    r"|(?P<rrn>[0-9]{5}-[0-9]{7})"
    r"|(?P<aadhaar>(?<=[2-9])[0-9]{3}[ \-][0-9]{4}[ \-][0-9]{4})"
    r"|(?P<dni>[0-9]{7}[ \-]?[A-Za-z])"
    r")(?![0-9A-Za-z])(?![ \-./][0-9])"
    # 123-45-6789 and 12-34-56 may be followed by another number ("12-34-56 87654321"), not by "-12"
    r"|(?:(?P<ssn>[0-9]{2}-[0-9]{2}-[0-9]{4})|(?P<sort>[0-9]-[0-9]{2}-[0-9]{2}))(?![0-9A-Za-z])(?!-[0-9])"
    r")"
)
_LONG_RUN = re.compile(r"[0-9](?<![0-9A-Za-z_][0-9])(?<![0-9][.,][0-9])[0-9]{7,}+(?![A-Za-z_])(?![.,][0-9])")
_PHONE_WORDS = regex.compile(
    r"(?:phone|tel|telephone|mobile|cell|call|ring|text|whatsapp|contact|móvil|movil|teléfono|telefono"
    r"|llama|téléphone|portable|appel|handy|telefon|anrufen|cellulare|chiama|celular|telefone|ligue"
    r"|telefoon|bel|komórka|zadzwoń|телефон|звон|手机|电话|電話|携帯|전화|휴대폰|핸드폰|cep|هاتف|جوال"
    r"|फ़ोन|फोन|मोबाइल)",
    regex.IGNORECASE,
)


def _detect_digit_clusters(ctx: _Context) -> None:
    text = ctx.text
    n = len(text)
    regions: list[list[int]] = []
    long_clusters: list[tuple[int, int]] = []  # where a card in another grouping may be (16+ characters)
    covered = 0
    for m in _CLUSTER.finditer(text):
        start, end = m.span()
        if end - start >= 16:
            long_clusters.append((start, end))
        if end - start > 64 and _TWO_DIGITS.search(text, start, end) is None:
            continue  # "1 1 1 1 ...": no personal number is made of single digits
        lo, hi = max(0, start - 16), min(n, end + 16)
        covered += hi - lo
        if regions and lo <= regions[-1][1]:
            regions[-1][1] = hi
        else:
            regions.append([lo, hi])
    for lo, hi in long_clusters:
        for m in _CARD_OTHER.finditer(text, lo, hi):
            why = _card_why(_digits(m.group()))
            if why:
                # In a card's own groups (4-4-4-4 or 4-6-5 joined by "_" or ","), as for _CARD's
                # groupings: the card it looks like, whatever label comes before it.
                weak = 0 if m.group("s4") or m.group("s5") else _REFERENCE_ONLY
                ctx.add(_P_CARD, m.start(), m.end(), "card", "stdnum.luhn", why, weak=weak)
        for m in _CARD_LOOSE.finditer(text, lo, hi):
            _loose_card(ctx, m)
    if len(regions) > 32 and covered > (regions[-1][1] - regions[0][0]) // 4:
        # Many clusters close together: one pass over the whole stretch costs less than one per cluster.
        regions = [[regions[0][0], regions[-1][1]]]
    for lo, hi in regions:
        at, retrying_until = lo, -1
        while (found := _CARD.search(text, at, hi)) is not None:
            # No card read from this group on: one may start at a later group of the same run ("paid on
            # 14/02/2024 4111 1111 1111 1111" read "2024 4111 1111 1111" and left the card in the clear).
            # Read again, a window reports only a Luhn-valid card that no 4-digit group follows (a
            # list of numbers, "years 2019 2020 2021 2022 2023", keeps its groups as typed).
            again = found.start() < retrying_until
            if _card(ctx, found, again=again):
                at = found.end()
            else:
                retrying_until = retrying_until if again else found.end()
                at = found.start() + 1
        for m in _NUMERIC_SHAPES.finditer(text, lo, hi):
            _numeric_shape(ctx, m)
        for m in _LONG_RUN.finditer(text, lo, hi):
            _long_run(ctx, m.start(), m.end())
        for m in _PHONE.finditer(text, lo, hi):
            _phone(ctx, m.start(), m.end())
        for m in _PHONE_RUN.finditer(text, lo, hi):
            _phone_run(ctx, m.start(), m.end())


#: New Zealand's bank account number as printed: bank (2 digits), branch (4), account (7) and suffix
#: (2-3), joined by dashes or spaces, the same throughout ("12-3456-7890123-00"). ``phonenumbers``
#: reads its middle groups as a phone number.
_NZ_ACCOUNT = re.compile(
    r"(?<![0-9\-])[0-9]{2}(?P<sep>[ \-])[0-9]{4}(?P=sep)[0-9]{7}(?P=sep)[0-9]{2,3}(?![0-9])"
)


#: The UK's Unique Taxpayer Reference after "UTR": ten digits (and an optional K). "UTR" is also
#: India's transfer reference (12 digits, or 16-22 letters and digits), which stays.
#: A Canadian account as a cheque's MICR line and payroll forms give it: the branch's transit
#: number (5), the institution (3) and the account (7-12), joined by dashes.
_CA_CHEQUE_ACCOUNT = regex.compile(r"(?<![0-9\-])[0-9]{5}-[0-9]{3}-[0-9]{7,12}(?![0-9\-])")
#: A Brazilian PIX random key (chave aleatória): a UUID, in a text that names a "chave" (key).
_PIX_KEY = regex.compile(
    r"(?<![0-9A-Fa-f\-])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![0-9A-Fa-f\-])"
)
_UTR = regex.compile(
    r"(?<![\p{L}\p{N}])utr(?:[ ](?:number|no\.?|ref(?:erence)?))?(?:[ ]?[:#=]|[ ]is)?[ ]{0,3}"
    r"(?P<v>[0-9]{5}[ ]?[0-9]{5}[Kk]?)(?![\p{L}\p{N}]|[ .\-/][0-9])",
    regex.IGNORECASE,
)


#: Kenya's KRA PIN (a taxpayer's: A or P, nine digits, a letter) after its label: "PIN" alone is a
#: card's, so only "KRA PIN" names it.
_KRA_PIN = regex.compile(
    r"(?<![\p{L}\p{N}])kra[ \-]?pin(?:[ ](?:no\.?|number|certificate))?(?:[ ]?[:#=\-]|[ ](?:is|was))?"
    r"[ ]{0,3}:?[ ]{0,3}"
    r"(?P<v>[ap][0-9]{9}[a-z])(?![\p{L}\p{N}])",
    regex.IGNORECASE,
)
#: An e-mail address URL-encoded in a link's query ("?email=priya.nair.1994%40gmail.com&token=...").
_ENCODED_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._+\-]{1,64}%40[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,4}"
    r"\.(?!(?:png|jpe?g|gif|webp|svg|pdf|docx?|xlsx?|csv|txt|zip|html?|js|css)(?![A-Za-z0-9]))[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9\-])"
)
#: A date of birth under a JSON or form key with a prefix glued to it (``"customerDob":"1984-11-23"``,
#: ``'applicant_date_of_birth': '23/11/1984'``): the key names it, whatever the prefix.
_JSON_DOB = regex.compile(
    # (a prefix ends at "_" or before a capital: "customerDob", "applicant_dob", not "rebirth_date")
    r"[\"'](?:[A-Za-z0-9]{0,24}_|[A-Za-z0-9]{0,24}(?<=[a-z0-9])(?=(?-i:Dob|DOB|Date|Birth)))?"
    r"(?:dob|date_?of_?birth|birth_?date)[\"'][ ]{0,3}:[ ]{0,3}[\"']?"
    r"(?P<v>(?:19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}|[0-9]{1,2}[/.\-][0-9]{1,2}[/.\-](?:19|20)[0-9]{2})(?![0-9])",
    regex.IGNORECASE,
)


@dataclass(frozen=True)
class _Shaped:
    """A value its pattern alone finds (its group ``v``, else the whole match), tried only where one
    of ``hints`` occurs in the lower-cased text (none: always)."""

    pattern: Any
    priority: int
    kind: str
    rule: str
    why: str
    hints: tuple[str, ...] = ()
    #: 0, or :data:`_REFERENCE_ONLY`: a labelled reference of that shape keeps it.
    weak: int = 0


#: Shaped values that need no digit (a UPI id may have none) ...
_SHAPED_ANY = (_Shaped(_UPI_ID, _P_EMAIL, "account", "rule:upi_id", "UPI payment address (VPA)", ("@",)),)
#: ... and those read only in a text with a digit.
_SHAPED_DIGITS = (
    _Shaped(
        _NZ_ACCOUNT, _P_LABELLED, "account", "rule:nz_account", "New Zealand account number, 2-4-7-2/3 digits"
    ),
    _Shaped(
        _UTR,
        _P_LABELLED,
        "national_id",
        "rule:utr",
        "ten digits after UTR (UK Unique Taxpayer Reference)",
        ("utr",),
    ),
    _Shaped(
        _KRA_PIN, _P_LABELLED, "national_id", "rule:kra_pin", "Kenya's KRA PIN after its label", ("kra",)
    ),
    _Shaped(_ENCODED_EMAIL, _P_EMAIL, "email", "rule:email", "address URL-encoded (%40)", ("%40",)),
    _Shaped(_JSON_DOB, _P_LABELLED, "dob", "rule:dob", "date under a date-of-birth key", ('"', "'")),
    _Shaped(
        _CA_CHEQUE_ACCOUNT,
        _P_LABELLED,
        "account",
        "rule:ca_account",
        "Canadian transit-institution-account, 5-3-7..12 digits",
        weak=_REFERENCE_ONLY,
    ),
    # (after "pix" itself: a label, :data:`_LABEL_KINDS`; "pix" is inside "pixel")
    _Shaped(
        _PIX_KEY,
        _P_LABELLED,
        "account",
        "rule:pix_key",
        "PIX random key (a UUID)",
        ("chave ", "chave:", "chave,", "chave."),  # (not "chaves")
        _REFERENCE_ONLY,
    ),
)


def _detect_shaped(ctx: _Context, rules: Sequence[_Shaped]) -> None:
    low = ctx.low
    for rule in rules:
        if rule.hints and not any(hint in low for hint in rule.hints):
            continue
        for m in rule.pattern.finditer(ctx.text):
            start, end = m.span("v") if "v" in rule.pattern.groupindex else m.span()
            ctx.add(rule.priority, start, end, rule.kind, rule.rule, rule.why, weak=rule.weak)


#: A card's expiry date after its label: "exp 12/25", "Expiry: 11/26", "exp 0428", "valid thru
#: 09/28", "my card expires march 2027" (the verbs only within a few words after "card"). MM/YY or
#: MM/YYYY (with ``/``), MMYY, or a month's name and the year, right after the label (a passport's
#: expiry is hidden too).
#: A month's name, as customers type it: English, abbreviated or misspelt ("febuary", "Janurary"),
#: Spanish, French, German, Italian ("marzo", "juni", "août"): a month's first three letters and up
#: to seven more, except the words that start like one ("maybe", "market", "junior", "decade").
_MONTH_NAME = (
    r"(?!(?:maybe|mayor|market|marked|married|marching|marine|junior|julep|decade|decent|decid|novel"
    r"|augur|janitor|octopus|aprons?)(?![\p{L}]))"
    r"(?:jan|ene|gen|feb|fév|fev|mar|mär|apr|avr|abr|may|mai|mag|jun|jui|giu|jul|lug|aug|ago|aoû|aou"
    r"|sep|set|okt|oct|ott|nov|dec|déc|dic|dez)[\p{L}]{0,7}(?![\p{L}])"
)
_EXPIRY_LABEL = regex.compile(
    r"(?<![\p{L}\p{N}])(?:(?:exp\.?|expiry|expiration)(?:[ _]date)?"
    # the verbs only of a card: "my card expires 10/27", not "my fixed rate expires march 2026"
    # (a card's last digits may come between: "the card ending 3181 - expires 12/27")
    r"|(?=exp)(?<=card[\p{L}\p{N} \-]{0,24})(?:expires|expiring|expired|exp)"
    # "VALID THRU" as cards print it; "valid until/till/through" only of a card ("the offer is valid
    # until 12/25" is the offer's)
    r"|valid[ ]thru"
    r"|(?=valid)(?<=(?:card|cards|cvv|cvc|valid[ ]from)[\p{L}\p{N} \-,/]{0,48})valid[ ](?:through|until|till)"
    r"|good[ ]thru|fecha[ ]de[ ](?:vencimiento|caducidad)|vencimiento|caducidad"
    r"|ablaufdatum|g[üu]ltig[ ]bis|date[ ]d['’]expiration"
    # the verbs and the words for a due date or "valid until" only of a card: "mi tarjeta ... caduca
    # 04/28", "karta ... ważna do 10/26" (not "mi oferta caduca 10/06", "Gutschein verfällt 12/25",
    # "la polizza ha scadenza 12/26", "De voucher is geldig tot 12/27", "Offerta valida fino al 12/25")
    # (the words first, then the card before them: the look back is made only where one is)
    r"|(?=caduca|scadenza|verf|expire|vervaldatum|geldig|wa[żz]na|data[ ]wa|v[áa]lid|valable|valida"
    r"|validade|vencimento|有效期|有効期限|son[ ]kullanma)"
    r"(?<=(?:tarjeta|carta|karta|karte|carte|card|kaart|pas|cvv|cvc|cart[ãa]o|cvc2|卡|カード|kart)"
    r"[\p{L}\p{N} \-,:：、，]{0,64})"
    # Portuguese, Chinese, Japanese, Turkish: "validade 11/27", "有效期限 07/29", "有効期限 08/27",
    # "son kullanma tarihi 01/28"
    r"(?:validade|vencimento|有效期(?:限|至)?|有効期限|son[ ]kullanma(?:[ ]tarihi)?"
    r"|(?<!(?:oferta|promoci[óo]n|promo|pago|cup[óo]n|voucher|vale|descuento|bono|plazo)[ ])caduca"
    r"|scadenza|verf[äa]llt|expire(?:[ ](?:le|en|fin))?|vervaldatum"
    r"|geldig[ ](?:tot(?:[ ]en[ ]met)?|t/m)"
    r"|wa[żz]na[ ]do(?:[ ]ko[ńn]ca)?|data[ ]wa[żz]no[śs]ci|v[áa]lid[oa][ ]hasta(?:[ ]el)?"
    r"|valable[ ]jusqu['’](?:[àa]|au)|valida[ ]fino[ ](?:al|a)))"
    r"[\"']?"  # a JSON key's closing quote: {"exp": "06/28"}
    r"(?:[ ]{0,3}\.{2,40}+)?"  # a form's dotted leader: "Expiry ....... 11/2030"
    r"(?:[ ]{0,3}(?:[:=\-]|is|was|on|of|date|in|at|end(?:[ ]of)?)(?![\p{L}])){0,3}"
    # "expiry date on the new card says 07/30"
    r"(?:[ ]{0,3}(?:on|of)[ ](?:the[ ]|my[ ]|your[ ])?(?:new[ ]|old[ ]|debit[ ]|credit[ ])?card"
    r"(?:[ ](?:says|shows|reads|is|was))?(?:[ ]{0,3}[:=\-])?)?[ ]{0,3}"
    # (in quotes, as a pasted form or JSON has it: exp '06/28')
    r"[\"'‘“]?"
    # MM/YY, MM/YYYY or MMYY (not "11.30", a time; not "9-10 working days")
    r"(?P<v>(?:0?[1-9]|1[0-2])[ ]?/[ ]?(?:20)?[0-9]{2}|(?:0[1-9]|1[0-2])[0-9]{2}"
    r"|" + _MONTH_NAME + r"\.?,?[ ](?:20[0-9]{2}|[0-9]{2}))"
    # (a sentence may end after it: "Expiry: 10/25. Security code ...")
    r"(?![0-9/:]|[.,][0-9])",
    regex.IGNORECASE,
)
#: MM.YY or MM-YY (MM.YYYY, MM-YYYY) after "exp", "expiry", "expiration" or "valid/good thru"
#: itself (not after a verb, where "11.30" is a time), with a card about: "card 4202.6355.3217.5511
#: exp 10.27", "Visa 4532-0188-7744-5610 valid thru 05-28" (a PII probe's miss). Only a year a card
#: in use may expire in (:data:`_CARD_YEARS`): "exp 10-12 days" is a range, "exp. 12.50" an expense;
#: nor a month's name after it: "exp 12-26 dec" is a range of days.
_EXPIRY_DOTTED = regex.compile(
    r"(?<![\p{L}\p{N}])(?:exp\.?|expiry|expiration|valid[ ]thru|good[ ]thru)(?:[ ]date)?"
    r"(?:[ ]{0,3}(?:is|was)(?![\p{L}]))?[ ]{0,3}[:=\-]?[ ]{0,3}"
    r"(?P<v>(?:0[1-9]|1[0-2])(?P<sep>[.\-])(?:20)?(?P<yy>[0-9]{2}))(?![0-9]|[.,\-/][0-9])"
    # (not a range of days: "card delivery exp 10-30 days", "card renewal exp 12-26 dec")
    r"(?![ ]?(?:days?|working|business|weeks?|months?|hours?|hrs?|mins?|minutes?)(?![\p{L}]))"
    # ("may" only as the month: "exp 12-26 may be wrong" is still an expiry)
    r"(?![ ]?(?!may[ ](?!20[0-9]{2}(?![0-9])))" + _MONTH_NAME + ")",
    regex.IGNORECASE,
)
#: Near a card number (:data:`_EXPIRY_NEAR_CARD_REACH` characters either side), a month/year after
#: a short or foreign label, in a table cell or brackets, or read off a photo with O for 0: "|
#: Expiry | 09/28 |", "exp (06/26)", "VALID THRU O8/27", "val 03/29", "scad. 07/27", "期限: 09/27",
#: "срок 07/27" (a held-out set's misses: the labels above need a card word right before them, or
#: take no bracket, bar or OCR "O"). Only with a card found: "val" and "期限" alone are other words.
_EXPIRY_NEAR_CARD = regex.compile(
    r"(?<![\p{L}\p{N}])(?:exp\.?|expiry(?:[ ]date)?|expiration(?:[ ]date)?|valid[ ]thru|val\.?|validade"
    r"|venc\.?|vencimiento|vencimento|scad\.?|scadenza|expire(?:[ ](?:le|en|fin))?"
    # (not an offer's, a payment's or a voucher's: "la oferta caduca 12/25")
    r"|(?<!(?:oferta|promoci[óo]n|promo|pago|cup[óo]n|voucher|vale|descuento|bono|plazo)[ ])caduc(?:a|idad)"
    r"|срок(?:[ ]действия)?"
    r"|有效期(?:限|至)?|期限|有効期限|g[üu]ltig[ ]bis|son[ ]kullanma(?:[ ]tarihi)?"
    # the nouns and "valid until" of Danish, Norwegian, Swedish, Finnish, Hebrew, Malay, Arabic
    # (their verbs, and Spanish "vence", only right after the card: :data:`_EXPIRY_VERB_AFTER_CARD`)
    r"|udl[øo]bsdato|utl[øo]psdato|gyldig[ ]til|giltigt?[ ](?:t\.?o\.?m\.?|till)|voimassa(?:[ ]asti)?"
    r"|תוקף(?:[ ]עד)?|tamat[ ]tempoh|tarikh[ ]luput|تاريخ[ ]الانتهاء|الصلاحية|صالحة[ ]حتى)"
    r"(?![\p{L}])(?:[ ]{0,3}[:=\-|(（：\[][ ]{0,3}){0,2}[ ]{0,3}"
    # (not the first date of a range: "val 01/24 - 12/27" is valid from 01/24)
    r"(?P<v>(?:[0O][1-9]|1[0-2O])[ ]?/[ ]?(?:2[0O])?[0-9O][0-9O])(?![0-9/])(?![ ]?[\-–][ ]?[0-9O]{1,2}/)",
    regex.IGNORECASE,
)
_EXPIRY_NEAR_CARD_REACH = 60
#: Right after a card number, a verb of its expiry and the month/year: "tarjeta [card] vence 10/27",
#: "kortet [card] udløb 04/26", "kad [card] tamat 12/27" ("... y la cuota vence 05/12", a due date,
#: is not the card's).
_EXPIRY_VERB_AFTER_CARD = regex.compile(
    r"[ ]{0,3}[,;:\-]?[ ]{0,3}(?:vence|venceu|vencia|udl[øo]b(?:er)?|utl[øo]p(?:er)?|berlaku|tamat|luput)"
    r"(?:[ ](?:el|em|en|på|til|hingga|sampai|s/d|pada))?[ ]{0,3}:?[ ]{0,3}"
    r"(?P<v>(?:0?[1-9]|1[0-2])[ ]?/[ ]?(?:20)?(?P<yy>[0-9]{2}))(?![0-9/])",
    regex.IGNORECASE,
)
#: The two-digit years a card in use may expire in: last year to ten years ahead ("vence el 10/12"
#: after a card is a due date, the 10th of December).
_CARD_YEARS = range((datetime.date.today().year - 1) % 100, (datetime.date.today().year + 10) % 100 + 1)
#: After a security code's 3-4 digits: not more of a number, nor a currency ("150 pounds").
_NOT_AN_AMOUNT_AFTER = (
    r"(?![0-9]|[ .,\-/][0-9]|[ ]?(?:pounds?|quid|dollars?|euros?|gbp|usd|eur|aud|nzd|[$£€]))"
)
#: Right after a card number, what a pasted card line goes on with: its expiry (MM/YY or MM/YYYY,
#: an "exp" label or not) and then, optionally, its security code (3-4 digits, a CVV label or not):
#: "4111 1111 1111 1111 12/26 123", "[card], exp 12/26, cvv 123".
_AFTER_CARD = regex.compile(
    r"[ ]{0,3}[,;|]?[ ]{0,3}(?:(?P<label>(?:and[ ]{1,3})?(?:it[ ]{1,3})?"
    r"(?:exp(?:iry|ires|iring)?\.?|valid[ ]thru)(?:[ ]{1,3}(?:on|in|at|date))?)[ ]{0,3}[:\-]?[ ]{0,3})?"
    # MM/YY or MM/YYYY; after a label also a month's name and the year ("... and it expires march 2027")
    r"(?P<exp>(?:0[1-9]|1[0-2])[ ]?/[ ]?(?:20)?[0-9]{2}"
    # MMYY without its slash only with the security code after it: "5210 ... 7257 0926 552"
    r"|(?:0[1-9]|1[0-2])[0-9]{2}(?=[ ]{1,3}[0-9]{3,4}" + _NOT_AN_AMOUNT_AFTER + r")"
    r"|(?(label)" + _MONTH_NAME + r"\.?,?[ ]20[0-9]{2}|(?!)))"
    r"(?![0-9/])"
    r"(?:[ ]{0,3}[,;|]?[ ]{0,3}(?:(?:cvv2?|cvc2?|csc|cv2|back|(?:sec\.?|security)(?:[ ]code)?)"
    r"[ ]{0,3}[:\-]?[ ]{0,3})?"
    r"(?P<cvv>[0-9]{3,4})" + _NOT_AN_AMOUNT_AFTER + r")?",
    regex.IGNORECASE,
)
#: Right after a card number, its security code named by what it is: "4385 7133 8485 4183 and then
#: the 3 numbers 617".
_CODE_AFTER_CARD = regex.compile(
    r"[ ]{0,3}[,;]?[ ]{0,3}(?:and[ ]+)?(?:then[ ]+)?(?:the[ ]+)?(?:3|three|4|four)[ ]+(?:numbers|digits)"
    r"(?:[ ]+(?:on|at)[ ]+the[ ]+back)?[ ]{0,3}[:\-]?[ ]{0,3}(?:(?:is|are|was|were)[ ]+)?"
    r"(?P<cvv>[0-9]{3,4})" + _NOT_AN_AMOUNT_AFTER,
    regex.IGNORECASE,
)


def _detect_card_details(ctx: _Context) -> None:
    """A card's expiry date: after an expiry label, and (with the security code after it) right after
    a card number. With the number, they are what a card-not-present payment needs (PCI DSS)."""
    text = ctx.text
    for m in _EXPIRY_LABEL.finditer(text):
        why = "date after a card-expiry label"
        ctx.add(_P_SECRET, m.start("v"), m.end("v"), "expiry", "rule:expiry", why)
    labelled = "xp" in ctx.low or "thru" in ctx.low
    dotted = labelled and ("card" in ctx.low or any(h.kind == "card" for h in ctx.hits))
    for m in _EXPIRY_DOTTED.finditer(text) if dotted else ():
        if int(m.group("yy")) not in _CARD_YEARS:  # "exp. 12.50": an expense of 12.50
            continue
        why = "month.year or month-year after a card-expiry label"
        ctx.add(_P_SECRET, m.start("v"), m.end("v"), "expiry", "rule:expiry", why)
    cards = [h for h in ctx.hits if h.kind == "card"]
    for m in _EXPIRY_NEAR_CARD.finditer(text) if cards else ():
        # after the card, as a pasted card's lines go on (an offer's or a bill's date before it stays)
        if any(c.end <= m.start() <= c.end + _EXPIRY_NEAR_CARD_REACH for c in cards):
            why = "month/year after an expiry label near a card number"
            ctx.add(_P_SECRET, m.start("v"), m.end("v"), "expiry", "rule:expiry", why)
    for card in cards:
        verb = _EXPIRY_VERB_AFTER_CARD.match(text, card.end)
        if verb is not None and int(verb.group("yy")) in _CARD_YEARS:
            why = "month/year after an expiry verb right after a card number"
            ctx.add(_P_SECRET, verb.start("v"), verb.end("v"), "expiry", "rule:expiry", why)
        m = _AFTER_CARD.match(text, card.end)
        if m is None:
            code = _CODE_AFTER_CARD.match(text, card.end)
            if code is not None:
                why = "3-4 digits named as a card's security code right after it"
                ctx.add(_P_SECRET, code.start("cvv"), code.end("cvv"), "cvv", "rule:cvv", why)
            continue
        why = "month/year right after a card number"
        ctx.add(_P_SECRET, m.start("exp"), m.end("exp"), "expiry", "rule:expiry", why)
        if m.group("cvv"):
            why = "3-4 digits after a card and its expiry"
            ctx.add(_P_SECRET, m.start("cvv"), m.end("cvv"), "cvv", "rule:cvv", why)


#: A date of birth said a few words after its label ("DOB on file is wrong: 14/02/1985", "my DOB
#: says 01/01/1970 but it's 11/01/1970"): every date whose four-digit year can be a birth year
#: (:data:`_BIRTH_YEAR_MAX`) up to :data:`_DOB_REACH` characters on, ending at a sentence's end; not
#: when the label's own value was found right after it ("my dob is 3 March 1990 and the payment on
#: 4 March 2024 failed": the second date is the payment's).
_DOB_NEAR = regex.compile(
    r"(?<![\p{L}\p{N}\[])(?:dob|d\.o\.b\.?|date[ ]of[ ]birth|birth[ ]?date|birthday)(?![\p{L}\]])",
    regex.IGNORECASE,
)
_DOB_REACH = 80
_SENTENCE_END = regex.compile(r"[.!?](?:\s|$)|\n")
_NEAR_DATE = regex.compile(r"(?<![0-9])" + _DATE_VALUE, regex.IGNORECASE)
_FOUR_DIGIT_YEAR = regex.compile(r"(?<![0-9])(?:19|20)[0-9]{2}(?![0-9])")
#: A year that can be a customer's year of birth: at least ten years ago ("my dob is fine, but the
#: payment on 14/02/2024 failed" keeps the payment's date; a birthday gift sent last year too).
_BIRTH_YEAR_MAX = datetime.date.today().year - 10


#: Another person's date of birth given right after one found: "My son's DOB is 21/07/2011 and mine
#: is 30/01/1980", "..., my wife's is 3 March 1982".
_DOB_CONTINUED = regex.compile(
    r"[ ]?,?[ ]{0,3}(?:(?:and|&)[ ]{1,3})?(?:mine|his|hers|(?:my|his|her)[ ][\p{L}]+['’]s)"
    r"[ ]{1,3}(?:is|was|:)[ ]{0,3}"
    + _DATE_VALUE
    # a correction: "DOB 14/02/1990 wait no 14/02/1991", "... sorry I mean 15/02/1990"
    + r"|[ ]?[,;!.]?[ ]{1,3}(?:no[ ]wait|wait[ ]no|sorry|i[ ]mean[t]?|correction|typo|oops)"
    r"(?![\p{L}])[^.!?0-9£$€]{0,24}?" + _DATE_VALUE,
    regex.IGNORECASE,
)


#: A date of birth with its verb after it, as German, Dutch, Chinese and Japanese put it: "ich bin
#: am 12.05.1979 geboren", "ik ben op 12-05-1979 geboren", "我是1985年6月15日出生的", "1985年6月15日生まれ"
#: (a PII probe's misses: the labels above come before the date). A year of birth only
#: (:data:`_BIRTH_YEAR_MAX`).
_DOB_VERB_AFTER = regex.compile(
    # the speaker's own birth: "ich bin am ... geboren", "ik ben op ... geboren", "我是...出生的",
    # "私は...に生まれました", "...生まれです" (not "Kunden, die vor dem 01.01.1960 geboren sind",
    # "1990年1月1日出生的客户", "2005年4月1日生まれ以降の方": a review of the first version)
    # (the date is ``v`` in each branch: the regex module takes a group name more than once)
    r"(?:(?<![\p{L}])(?:ich[ ]bin|bin[ ]ich|ich[ ]wurde|wurde[ ]ich|ik[ ]ben|ben[ ]ik)[ ](?:am[ ]|op[ ])?"
    r"(?:den[ ]|de[ ])?" + _DATE_VALUE + r"[ ]{0,3}geboren(?![\p{L}])"
    r"|(?:我|本人)[^。！？\n0-9]{0,4}?" + _DATE_VALUE + r"[ ]?出生(?!的(?:客户|人|用户))"
    r"|(?:私|僕|俺|わたし)[^。！？\n0-9]{0,4}?" + _DATE_VALUE + r"[ ]?に?生まれ(?!以)"
    r"|" + _DATE_VALUE + r"[ ]?生まれ(?:です|でした))",
    regex.IGNORECASE,
)


def _detect_nearby_dob(ctx: _Context) -> None:
    text = ctx.text
    if "geboren" in ctx.low or "出生" in text or "生まれ" in text:
        for m in _DOB_VERB_AFTER.finditer(text):
            year = _FOUR_DIGIT_YEAR.search(m.group("v"))
            if year is not None and int(year.group()) <= _BIRTH_YEAR_MAX:
                why = "date before a verb of one's own birth"
                ctx.add(_P_SECRET, m.start("v"), m.end("v"), "dob", "rule:dob", why)
    for hit in [h for h in ctx.hits if h.kind == "dob"]:
        m = _DOB_CONTINUED.match(text, hit.end)
        year = _FOUR_DIGIT_YEAR.search(m.group("v")) if m is not None else None
        if m is not None and (year is None or int(year.group()) <= _BIRTH_YEAR_MAX):
            why = "date of birth given right after another"
            ctx.add(_P_SECRET, m.start("v"), m.end("v"), "dob", "rule:dob", why)
    found = sorted(h.start for h in ctx.hits if h.kind == "dob")  # the labels' own values
    for label in _DOB_NEAR.finditer(text):
        end = min(len(text), label.end() + _DOB_REACH)
        i = bisect.bisect_left(found, label.start())
        if (i < len(found) and found[i] < end) or "[DOB]" in text[label.end() : end]:
            continue  # the label's value was found (or hidden before: redact(redact(x)) == redact(x))
        stop = _SENTENCE_END.search(text, label.end(), end)
        if stop is not None:
            end = stop.start()
        for m in _NEAR_DATE.finditer(text, label.end(), end):
            year = _FOUR_DIGIT_YEAR.search(m.group("v"))
            if year is not None and int(year.group()) <= _BIRTH_YEAR_MAX:
                why = "date in the clause of a date-of-birth label"
                ctx.add(_P_SECRET, m.start("v"), m.end("v"), "dob", "rule:dob", why)


#: Digits typed so that no number shows: spelt out ("four nine six seven ..."), or one at a time with
#: spaces ("2 7 2 0 - 3 6 7 4 - ..."). A run of at least :data:`_DISGUISED_MIN` digits is read as
#: the number it spells (:func:`_detect_disguised_numbers`).
#: The digits' words in the languages whose words are written apart (English first; then Spanish,
#: French, German, Italian, Portuguese, Dutch, Polish and Russian, as a voice assistant writes
#: them down). A run needs :data:`_DISGUISED_MIN` of them in a row, so "due", "un" or "acht"
#: alone are words, not digits.
_DIGIT_NAMES: Final = (
    ("0", "zero oh nought cero zéro null nul ноль нуль"),
    ("1", "one uno una un une eins ein um uma een jeden jedna один одна"),
    ("2", "two dos deux zwei zwo due dois duas twee dwa dwie два две"),
    ("3", "three tres trois drei tre três drie trzy три"),
    ("4", "four cuatro quatre vier quattro quatro cztery четыре"),
    ("5", "five cinco cinq fünf funf cinque vijf pięć piec пять"),
    ("6", "six seis sechs sei zes sześć szesc шесть"),
    ("7", "seven siete sept sieben sette sete zeven siedem семь"),
    ("8", "eight ocho huit acht otto oito osiem восемь"),
    ("9", "nine nueve neuf neun nove negen dziewięć dziewiec девять"),
)
_DIGIT_VALUES: Final[Mapping[str, str]] = MappingProxyType(
    {word: digit for digit, words in _DIGIT_NAMES for word in words.split()}
)
_DISGUISED_MIN = 6


def _spelt_digits(spelt: str) -> str:
    """The digits a run of spelt digits gives: "oh seven double oh nine" -> "07009"."""
    out: list[str] = []
    times = 1
    for word in regex.findall(r"[\p{L}]+", spelt.lower()):
        if word in ("double", "triple"):
            times = 2 if word == "double" else 3
            continue
        out.append(_DIGIT_VALUES[word] * times)
        times = 1
    return "".join(out)


#: A spelt digit, "double" or "triple" before one as said aloud ("double oh", "triple five").
#: One digit's word (:data:`_DIGIT_NAMES`), as a whole word.
_DIGIT_WORD = _trie_pattern(list(_DIGIT_VALUES)) + r"(?![\p{L}])"
_SPELT_DIGIT = r"(?:(?:double|triple)[ ])?" + _DIGIT_WORD
_SPELT_RUN = regex.compile(
    r"(?<![\p{L}\p{N}])" + _SPELT_DIGIT + r"(?:[ ]{0,2}[,\-]?[ ]{1,2}" + _SPELT_DIGIT + r"){4,}"
    r"(?![\p{L}\p{N}])",
    regex.IGNORECASE,
)
#: Digits said in Chinese or Japanese numerals ("幺三九幺二三四五六七八", "〇九〇の一二三四の五六七八") or in
#: Sino-Korean syllables ("공일공 구팔칠육 오사삼이"), as a voice assistant writes a number down: at
#: least seven in a row (groups apart by a space, a dash or の), so "一二" in a word stays a word.
_CJK_DIGITS: Final[Mapping[str, str]] = MappingProxyType(
    {**dict.fromkeys("〇零", "0"), **dict.fromkeys("一幺", "1"), **dict.fromkeys("二两", "2"), "三": "3",
     "四": "4", "五": "5", "六": "6", "七": "7", "八": "8", "九": "9", **dict.fromkeys("공영", "0"),
     "일": "1", "이": "2", "삼": "3", "사": "4", "오": "5", **dict.fromkeys("육륙", "6"), "칠": "7",
     "팔": "8", "구": "9"}
)  # fmt: skip
_CJK_DIGIT_RUN = regex.compile(
    r"(?<![〇零一幺二两三四五六七八九十百千万])[〇零一幺二两三四五六七八九]{2,}"
    r"(?:[ \-の]?[〇零一幺二两三四五六七八九]{2,})*(?![〇零一幺二两三四五六七八九十百千万])"
    r"|(?<![\p{Hangul}])[공영일이삼사오육륙칠팔구]{2,}"
    r"(?:[ \-][공영일이삼사오육륙칠팔구]{2,})+(?![\p{Hangul}])"
)
_YEARS = re.compile(r"(?:19|20)[0-9]{2}(?:19|20)[0-9]{2}")
_SPACED_RUN = re.compile(
    r"(?<![0-9A-Za-z])[0-9](?:[ ]{1,4}(?:[-–/][ ]{1,2})?[0-9](?![0-9])){5,}(?![0-9A-Za-z])"
)
#: What the words before a disguised number say it is (the nearest such label within 40 characters).
_DISGUISED_LABELS = regex.compile(
    r"(?<![\p{L}])(?:(?P<sort>sort[ ]?code|sort|s/?c)"
    r"|(?P<account>acc(?:oun)?t?(?:[ ]?(?:number|no|num|#))?|a/c)"
    r"|(?P<ssn>ssn|social[ ]security(?:[ ]number)?)|(?P<card>card(?:[ ]number)?|long[ ]number)"
    r"|(?P<phone>(?:tele)?phone|mobile|tel|cell|call))(?![\p{L}])",
    regex.IGNORECASE,
)


#: Between a label and the number it names (:func:`_detect_disguised_numbers`).
_DISGUISED_LINK = regex.compile(
    r"(?:[ ]|[:=#\-,.]|is|was|number|no|num|code|my|the|it['’]?s|its)*", regex.IGNORECASE
)
#: Just before digits that are not a number of the customer's: a phone menu's keys.
_DISGUISED_NOT = regex.compile(
    r"(?<![\p{L}])(?:press|dial|option|options|extension|ext|key|keys)(?![\p{L}])", regex.IGNORECASE
)
#: At most this many disguised runs are read per text (each may be tried as a phone number).
_DISGUISED_RUNS = 32


def _counting(digits: str) -> bool:
    """Whether ``digits`` count up or down by one ("123456", "987654") or repeat one digit ("333333")."""
    steps = {int(b) - int(a) for a, b in itertools.pairwise(digits)}
    return len(steps) == 1 and steps <= {-1, 0, 1}


def _detect_disguised_numbers(ctx: _Context) -> None:
    """Numbers spelt out or typed a digit at a time (:data:`_SPELT_RUN`, :data:`_SPACED_RUN`), read
    as the digits they give: a Luhn-valid 13-19 digits is a card; after a sort-code label, 6 digits
    are a sort code; after an account label, 6-12 an account; after "SSN", 9 an SSN; a valid phone
    number in a region tried is a phone; any other run of 8 digits or more a [NUMBER]. Shorter runs
    are left to the labels' own rules (a PIN or a code spelt out)."""
    text = ctx.text
    runs = [
        (
            m.start(),
            m.end(),
            _spelt_digits(m.group()),
            True,
        )
        for m in _SPELT_RUN.finditer(text)
    ]
    runs += [
        (m.start(), m.end(), "".join(c for c in m.group() if c.isdigit()), False)
        for m in _SPACED_RUN.finditer(text)
    ]
    runs += [
        (m.start(), m.end(), digits, True)
        for m in _CJK_DIGIT_RUN.finditer(text)
        # (not two years joined: "二〇二三-二〇二四学年", the 2023-2024 school year)
        if not _YEARS.fullmatch(digits := "".join(_CJK_DIGITS.get(c, "") for c in m.group()))
    ]
    for start, end, digits, spelt in runs[:_DISGUISED_RUNS]:
        n = len(digits)
        if n < _DISGUISED_MIN or _counting(digits) or _DISGUISED_NOT.search(text, max(0, start - 16), start):
            continue  # "one, two, three, four, five, six times", "press 1 2 3 4 5 6"
        label = None
        for m in _DISGUISED_LABELS.finditer(text, max(0, start - 40), start):
            # the label's value: only its connecting words between ("sort code is 4 0 4 7 0 8")
            label = m.lastgroup if _DISGUISED_LINK.fullmatch(text, m.end(), start) else None
        if 13 <= n <= 19 and std_luhn.is_valid(digits):
            kind, why = "card", f"{n} digits spelt or spaced out, Luhn-valid"
        elif label == "sort" and n == 6:
            kind, why = "sort_code", "6 digits spelt or spaced out after a sort-code label"
        elif label == "account" and 6 <= n <= 12:
            kind, why = "account", f"{n} digits spelt or spaced out after an account label"
        elif label == "ssn" and n == 9:
            kind, why = "ssn", "9 digits spelt or spaced out after an SSN label"
        elif (
            9 <= n <= 15
            and digits[0] == "0"
            and (label == "phone" or spelt)
            and _valid_phone_anywhere(digits)
        ):
            kind, why = "phone", f"{n} digits spelt or spaced out, a valid phone number"
        elif label == "card" and 13 <= n <= 19:
            kind, why = "card", f"{n} digits spelt or spaced out after a card label"
        elif spelt and n >= 8:
            kind, why = "number", f"{n} digits spelt out"
        else:
            continue  # digits a space apart without a label: the digit detectors' ("steps 1 2 3 ...")
        # Below the phone detectors, which read a spaced-out number with its "+" ("call + 4 4 7 9 ...").
        ctx.add(_P_WEAK_ID, start, end, kind, "rule:disguised", why)


#: A PIN or a card's security code spelt out in number words, after its label: "my pin is four
#: nine two one", "cvv: one two three" (4-6 words for a PIN, 3-4 for a code).
_SPELT_SECRET = regex.compile(
    r"(?<![\p{L}\p{N}])(?:(?P<pin>pin(?:[ -]?(?:code|number|код|kod))?|pincode|пин(?:-?код)?|geheimzahl"
    r"|c[óo]digo[ ]pin|code[ ]pin)|(?P<cvv>cvv2?|cvc2?|security[ ]code)"
    # a one-time code said aloud: "the code they texted me is four eight two nine one three"
    r"|(?P<otp>(?<=(?:the|my|your)[ ])code|otp|one[ -]time[ ](?:code|passcode)|verification[ ]code))"
    r"(?:[ ]on[ ]the[ ]back|[ ](?:they|you|the[ ]bank)[ ](?:texted|sent|gave)(?:[ ](?:me|us))?)?"
    r"(?:[ ](?:is|was|will[ ]be|should[ ]be|ist|es|est|è|é|jest|это|—)|[ ]?[:=])?[ ]{1,3}"
    rf"(?P<v>{_DIGIT_WORD}(?:[ ,\-]{{1,2}}{_DIGIT_WORD}){{2,7}})(?![\p{{L}}]|[ ,\-]{{1,2}}{_DIGIT_WORD})",
    regex.IGNORECASE,
)


#: A secret said before its label: "4821 is my pin", "123 is the cvv"; a one-time code said with
#: where it came from: "code 123456 from the SMS", "I got 654321 by text".
_SECRET_BEFORE_LABEL = regex.compile(
    r"(?<![\p{L}\p{N}.,/\-])(?P<v>[0-9]{3,6})[ ]+(?:is|was|will[ ]be)[ ]+(?:my|the)[ ]+"
    r"(?:new[ ]+|old[ ]+|(?:debit[ ]+|credit[ ]+)?card(?:['’]s)?[ ]+)?"
    r"(?:(?P<pin>pin(?:[ ](?:number|code))?)|(?P<cvv>cvv2?|cvc2?|security[ ]code))(?![\p{L}])"
    # the label ends the clause ("4821 is my pin, ..."), not "... is my pin problem"
    r"(?=[ ]*(?:$|[.,!?;:)\n]|(?:and|but|so|for|on|of|please|pls|thanks|btw)(?![\p{L}])))",
    regex.IGNORECASE,
)
_OTP_FROM_TEXT = regex.compile(
    r"(?:(?<![\p{L}])code[ ]+(?P<v>[0-9]{4,8})[ ]+(?:from|in|via)[ ]+(?:the[ ]+|your[ ]+|a[ ]+|my[ ]+)?"
    r"|(?<![\p{L}])(?:got|received|recieved|was[ ]sent|sent[ ]me)[ ]+(?:the[ ]+code[ ]+|a[ ]+code[ ]+)?"
    r"(?P<v>[0-9]{4,8})[ ]+(?:by|via|in[ ]+(?:a|the|an))[ ]+)"
    r"(?:sms|text|message|e-?mail)(?![\p{L}])",
    regex.IGNORECASE,
)


#: A one-time code's digits, whole or in groups ("582041", "739 204", "77 31 58", "0 0 4 7 1 9").
_OTP_DIGITS = (
    r"(?P<v>[0-9]{2,4}(?:[ \-][0-9]{2,4}){1,3}|[0-9](?:[ ][0-9]){3,7}|[0-9]{4,8})"
    r"(?![0-9]|[.,][0-9]|[ \-][0-9])"
)
#: The word before "code" that makes it something else than a one-time code ("your sort code is",
#: "your promo code is", "reference code 20231145 was sent by email"); "bank" is not one of them here
#: ("Your Harbour Bank code is 77 31 58"): after "your ... bank code is" only 4-6 digits count.
_NOT_OTP_BEFORE = (
    r"(?<!(?:" + _NOT_OTP_CODE.replace("|bank|", "|") + r"|tariff|transaction|merchant|routing|transit"
    r"|ifsc|bsb|customer|membership|member|client|user|account|iban|ticket|parcel|order|delivery)[ ])"
)
#: A one-time code of 4-6 digits, whole or in groups (after a bare "code", where a longer number is
#: more likely something else: "your bank code is 37040044" is a German bank's sort number).
_OTP_DIGITS_SHORT = (
    r"(?P<v>[0-9]{3}[ \-][0-9]{3}|[0-9]{2}[ ][0-9]{2}[ ][0-9]{2}|[0-9](?:[ ][0-9]){3,5}|[0-9]{4,6})"
    r"(?![0-9]|[.,][0-9]|[ \-][0-9])"
)
#: One-time codes said the ways a bank's text message and its customers say them: "Your OTP for txn
#: of INR 12,000.00 at FLIPKART is 582041", "Your Teller Bank code is 77 31 58", "code 739 204 came
#: by sms", "Got a text from you with code 664120", "i got two codes, 902114 and 118630".
#: What a bank's text puts between its code's name and the code: "for txn of INR 12,000.00 at
#: FLIPKART is" (a full stop only inside a number).
_OTP_FOR_IS = r"(?:[ ]+(?:for|to)[ ](?:[^.!?\n]|\.(?=[0-9])){0,60}?)?[ ]+is[ ]*:?[ ]*"
_OTP_SAID = [
    regex.compile(
        r"(?<![\p{L}])your[ ]+(?:[\p{L}&'’\-]+[ ]+){0,3}(?:otp|one[ -]?time[ ](?:password|passcode|code|pin))"
        + _OTP_FOR_IS
        + _OTP_DIGITS,
        regex.IGNORECASE,
    ),
    regex.compile(
        r"(?<![\p{L}])your[ ]+(?:[\p{L}&'’\-]+[ ]+){0,3}"
        + _NOT_OTP_BEFORE
        + r"code"
        + _OTP_FOR_IS
        + _OTP_DIGITS_SHORT,
        regex.IGNORECASE,
    ),
    regex.compile(
        r"(?<![\p{L}])"
        + _NOT_OTP_BEFORE
        + r"code[ ]+"
        + _OTP_DIGITS_SHORT
        + r"[ ]+(?:came|arrived|was[ ]sent|sent)[ ]+(?:by|via|in)[ ]+"
        r"(?:the[ ]+|a[ ]+|an[ ]+)?(?:sms|text|message|e-?mail)(?![\p{L}])",
        regex.IGNORECASE,
    ),
    regex.compile(
        # from the bank: "Got a text from you with code 664120" (not "a text from Royal Mail with code")
        r"(?<![\p{L}])(?:text|sms|message|e-?mail)[ ]+from[ ]+(?:you|us|the[ ]bank|your[ ]bank|my[ ]bank)"
        r"[ ]+with[ ]+(?:the[ ]+|a[ ]+)?"
        r"(?:(?:one[ -]?time|verification|security)[ ]+)?code[ ]*:?[ ]*" + _OTP_DIGITS,
        regex.IGNORECASE,
    ),
    # a code used to approve something: "Used code 993104 to approve a £1,250.00 payment"
    regex.compile(
        r"(?<![\p{L}])"
        + _NOT_OTP_BEFORE
        + r"code[ ]+"
        + _OTP_DIGITS_SHORT
        + r"[ ]+to[ ]+(?:approve|authori[sz]e|confirm|verify|log[ ]?in|sign[ ]in|complete)(?![\p{L}])",
        regex.IGNORECASE,
    ),
    regex.compile(
        r"(?<![\p{L}])(?:got|received|recieved|have|two|2)[ ]+(?:one[ -]?time[ ]+|verification[ ]+)?codes"
        # six digits each, as one-time codes are ("two codes, 5001 and 5002" on an ATM are not)
        r"[ ]*[,:]?[ ]+(?P<v>[0-9]{6})(?![0-9])(?:[ ]*,?[ ]+(?:and|or|&)[ ]+(?P<w>[0-9]{6})(?![0-9]))?",
        regex.IGNORECASE,
    ),
]


#: Answers to security questions written as question and answer: after a security-answer label,
#: each "question - answer" or "question = answer" pair ("security answers: favourite teacher = Mrs
#: Patel, first car = Fiesta"); and a security question asked, then answered after its question mark
#: ("what was the name of your first school? St Brigid's").
_SECURITY_ANSWERS_LABEL = regex.compile(
    r"(?<![\p{L}])(?:security|secret|memorable)[ ](?:question[ ])?(?:answers?|questions?)[ ]*[:\-–]\s*",
    regex.IGNORECASE,
)
#: A security question's topic, one of which a question of :data:`_QA_PAIR` names.
_QA_TOPIC_WORDS = (
    r"pet|car|school|teacher|maiden|name|city|town|born|birth|street|nickname|friend|film|movie|book"
    r"|food|colou?r|team|boss|job|employer|hero|sport|song|band|place|holiday|animal|cousin|sibling"
    r"|brother|sister|concert|house"
)
_QA_PAIR = regex.compile(
    r"(?P<q>(?=(?:[\p{L}'’]+[ ]){0,4}?(?:" + _QA_TOPIC_WORDS + r")(?:['’]?s)?(?![\p{L}]))"
    r"(?:[\p{L}'’]+[ ]){0,4}[\p{L}'’]+)"
    # the sign between: "=" or ":", or a dash with a space beside it (not "case-sensitive")
    r"(?:[ ]*[=:][ ]*|[ ]+[-–][ ]*|[ ]*[-–][ ]+)"
    # the answer, not a complaint ("first car - I don't remember", "pet = forgotten")
    r"(?!(?:i|i['’]m|i['’]ve|don['’]?t|not|no|none|n/a|forgot(?:ten)?|unknown|please|pls|help|can['’]?t"
    r"|cannot|wrong|it|it['’]s|its|keeps?|locked|reset|same|blank|empty)(?![\p{L}'’]))"
    r"(?P<a>[^\s,;=\-–:][^,;\n=]{0,39}?)(?=[ ]*(?:[,;\n]|$|\.(?:\s|$)|[ ]and[ ]))",
    regex.IGNORECASE,
)
_QA_NEXT = regex.compile(r"[ ]*(?:[,;\n]|and)[ ]*", regex.IGNORECASE)
#: What a security question asks about, after "your": "your first pet", "your mother's maiden name".
_SECURITY_TOPIC = (
    r"(?:first[ ](?:pet|school|teacher|car|job|boss|employer|house|street|concert|girlfriend|boyfriend"
    r"|love|phone|kiss)|favou?rite[ ](?:teacher|film|movie|book|food|colou?r|sport|team|song|band|singer"
    r"|actor|place|city|holiday|animal|author|dish)|childhood[ ](?:nickname|best[ ]friend|hero|home|pet"
    r"|street)|(?:mother|mum|mom|father|dad)['’]?s[ ](?:maiden|middle)[ ]name|best[ ]friend['’]?s?[ ]name"
    r"|oldest[ ](?:sibling|cousin|brother|sister)|place[ ]of[ ]birth|(?:city|town)[ ]of[ ]birth"
    r"|nickname|pet['’]?s[ ]name)"
)
_SECURITY_QUESTION = regex.compile(
    r"(?<![\p{L}])(?:what|what['’]s|whats|who|where|which|name[ ]of)(?:[ ][\p{L}'’]+){0,6}?[ ]your"
    r"(?:[ ][\p{L}'’]+){0,2}?[ ]" + _SECURITY_TOPIC + r"(?:[ ][\p{L}'’]+){0,3}?[ ]?\?[ ]*"
    # a name (capitalised words), or one word in lower case ending the sentence ("... pet? rex"),
    # never a closing word ("... statement? Thanks!")
    r"(?!(?:i|it|its|it['’]s|is|can|how|what|why|when|where|who|the|a|an|my|your|do|does|did|please"
    r"|pls|thanks|thank|thx|cheers|regards|help|urgent|anyone|ok|okay|yes|no|not|and|but|so|that|this"
    r"|tomorrow|today|yesterday|hello|hi|lol|sorry|asap|now)(?![\p{L}'’]))"
    r"(?P<a>(?-i:[\p{Lu}\p{N}][\p{L}\p{N}'’\-]*(?:[ ][\p{Lu}\p{N}][\p{L}\p{N}'’\-]*){0,3})"
    r"|(?-i:\p{Ll}[\p{L}'’\-]*)(?=[ ]*(?:[.!\n]|$)))"
    r"(?=[ ]*(?:[.,;!\n]|$))",
    regex.IGNORECASE,
)


#: A security answer named, then given at the start of the next sentence: "Security question was
#: mother's maiden name. It's Okonkwo.", "characters 2, 5 and 7 of my memorable word. The word is
#: CHARLOTTE so that's H, L and T". The answer is one to four capitalised words (not a word of
#: :data:`_NOT_A_NAME`) ending its clause.
_ANSWER_NEXT = regex.compile(
    r"(?<![\p{L}])(?:maiden[ ]name|memorable[ ](?:word|name|place|date|answer)|security[ ](?:answer|question)"
    r"|secret[ ](?:word|answer|question)|first[ ](?:pet|school|car)|favou?rite[ ](?:teacher|film|book|food))"
    r"[^.!?\n]{0,40}[.!?:][ ]{1,3}"
    r"(?:(?P<named>the[ ](?:word|answer|name)[ ](?:is|was)|(?:the[ ])?answer[ ]?(?:is|was|:))"
    r"|it['’]?s|it[ ](?:is|was))"
    r"[ ]{1,3}(?P<a>(?-i:\p{Lu}[\p{L}'’\-]+(?:[ ]\p{Lu}[\p{L}'’\-]+){0,3}))"
    # the answer ends its sentence ("It's Okonkwo."), or goes on only after "the word is ..."
    # ("It's Monday and I still can't get in" is the day)
    r"(?=[ ]*(?:[.,;!?\n]|$)|(?(named)[ ]+(?:so|and|but|which)(?![\p{L}])|(?!)))",
    regex.IGNORECASE,
)
#: Words of a sentence that start it capitalised after "It's": days, months, feasts.
_NOT_AN_ANSWER_WORD = frozenset(
    """monday tuesday wednesday thursday friday saturday sunday january february march april may june
    july august september october november december christmas easter today tomorrow ok okay fine
    correct wrong right true false""".split()  # noqa: SIM905
)


#: A security question's topic as a form's field, and its answer: "First school: St Bride's Primary.
#: First car: a red Fiat Panda.", "Answer to 'city where your parents met': Bulawayo", "for the
#: security question the answer is Biscuit". The answer runs to the end of its clause (at most 40
#: characters).
_TOPIC_ANSWER = regex.compile(
    r"(?:(?<![\p{L}])(?:(?:my|your)[ ])?(?:first|favou?rite|childhood|oldest|eldest)[ ]"
    r"(?:school|car|pet|teacher|friend|street|film|movie|book|food)(?:['’]s)?(?:[ ]name)?"
    r"[ ]*[:=][ ]*"
    r"|(?<![\p{L}])answer[ ]to[ ][\"'‘“][^\"'’”\n]{1,60}[\"'’”][ ]*(?:[:=\-][ ]*|is[ ]+|was[ ]+)"
    r"|(?<![\p{L}])security[ ]question[^.!?\n]{0,24}?(?:the[ ]answer[ ](?:is|was)|answer[ ]*:)[ ]+"
    r"(?=(?-i:[\p{Lu}\p{N}])))"
    # at most five words, one of them capitalised ("a red Fiat Panda"), not a sentence ("paid weekly
    # into this account", "started 2019 at Tesco")
    r"(?P<a>(?=[^.,;!?\n\[]{0,39}?(?-i:\p{Lu}))[^\s.,;!?\[\p{N}][^\s.,;!?\n\[]*"
    r"(?:[ ][^\s.,;!?\n\[(]+){0,4}?)(?=[ ]*(?:[.,;!?\n(]|$))",
    regex.IGNORECASE,
)
#: What says there is no answer: "first car: I don't remember", "first school: not sure".
_NO_ANSWER = regex.compile(
    r"(?:i|not|no|none|n/a|na|unknown|don['’]?t|dont|can['’]?t|cannot|forgot|forgotten|same|what|which"
    r"|wrong|correct|right|blank|empty|missing|the[ ]same|it|that|this|yes|yeah|absolutely|definitely"
    r"|always|still|to|probably|maybe|never|\p{L}+ed|\p{L}+ing)(?![\p{L}'’])",
    regex.IGNORECASE,
)
#: Letters of a memorable word asked for by position, and given: "you asked for the 2nd 5th and 8th
#: letters: E, O, R", "the 3rd, 4th and 7th characters are l, m, e". One to six single letters or
#: digits, apart.
_ORDINAL = (
    r"(?:[0-9]{1,2}(?:st|nd|rd|th)|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last)"
)
_POSITION_LETTERS = regex.compile(
    r"(?<![\p{L}\p{N}])" + _ORDINAL + r"(?:[ ]*,?[ ]*(?:and[ ]+|&[ ]*)?" + _ORDINAL + r"){1,5}"
    r"[ ]+(?:letters?|characters?|chars?)(?:[ ]+of[ ]+(?:my|the|your)[ ]+[\p{L} ]{1,30}?)?"
    r"[ ]*(?:are|were|is|:|=|-|–|would[ ]be|will[ ]be)[ ]*"
    r"(?P<a>[\p{L}\p{N}](?![\p{L}\p{N}])(?:[ ]*(?:,|&|and|[ ])[ ]*[\p{L}\p{N}](?![\p{L}\p{N}])){1,5})",
    regex.IGNORECASE,
)


#: Words :data:`_TOPIC_ANSWER` and :data:`_ANSWER_NEXT` need (one of them), and
#: :data:`_POSITION_LETTERS`, in lower case (a quick test before the patterns).
_TOPIC_HINT = (
    "first", "favo", "childhood", "oldest", "eldest", "answer", "question", "maiden", "memorable", "secret",
)  # fmt: skip
_POSITION_HINT = ("lett", "char")
_TOPIC_HINT_ANY = re.compile("|".join(_TOPIC_HINT))
_POSITION_HINT_ANY = re.compile("|".join(_POSITION_HINT))


def _detect_security_answers(ctx: _Context) -> None:
    """:data:`_SECURITY_ANSWERS_LABEL` with :data:`_QA_PAIR`, and :data:`_SECURITY_QUESTION` (read
    with the text's line breaks: a pair a line ends with its line)."""
    text = ctx.lines
    low = text.lower()
    if "answer" in low or "question" in low:
        for label in _SECURITY_ANSWERS_LABEL.finditer(text):
            at = label.end()
            while (pair := _QA_PAIR.match(text, at)) is not None:
                why = "answer after its security question"
                ctx.add(_P_SECRET, pair.start("a"), pair.end("a"), "password", "rule:password", why)
                more = _QA_NEXT.match(text, pair.end())
                if more is None:
                    break
                at = more.end()
    if "?" in text:
        for m in _SECURITY_QUESTION.finditer(text):
            why = "answer written after a security question"
            ctx.add(_P_SECRET, m.start("a"), m.end("a"), "password", "rule:password", why)
    # (each pattern only where a word it needs is: most messages hold none)
    topic = _TOPIC_HINT_ANY.search(low) is not None
    position = _POSITION_HINT_ANY.search(low) is not None
    for pattern, hint in ((_TOPIC_ANSWER, topic), (_POSITION_LETTERS, position)):
        for m in pattern.finditer(text) if hint else ():
            if _NO_ANSWER.match(m.group("a")) is None:
                why = "security answer after its question, or a memorable word's letters"
                ctx.add(_P_SECRET, m.start("a"), m.end("a"), "password", "rule:password", why)
    for m in _ANSWER_NEXT.finditer(text) if topic else ():
        first = m.group("a").split(" ")[0].lower()
        if first not in _NOT_A_NAME and first not in _NOT_AN_ANSWER_WORD:
            why = "answer given in the sentence after its question"
            ctx.add(_P_SECRET, m.start("a"), m.end("a"), "password", "rule:password", why)


#: A secret asked for, then told: a secret's name, and in the same sentence or the next one the
#: customer saying they gave it, and what they gave. How fraud victims write to their bank: "they
#: asked for my TAC. I gave them 558102", "needed my pin to 'cancel the transaction'. I told him 7 3
#: 9 1", "asked me to reply with my online banking password. I sent HuskyMom#77", "the 3 numbers on
#: the back so I put 482". What was given must have the secret's shape (:func:`_given_secret`).
_SECRET_NAMES = (
    r"(?:(?P<otp>otp|tac|one[ -]?time[ ](?:code|passcode|password|pin)"
    r"|(?:verification|security|sms|text|login|log-in|sign-in|2fa)[ ]code|" + _NOT_OTP_BEFORE + r"code)"
    r"|(?P<pin>pin(?:[ ](?:number|code))?|m-?pin|passcode)"
    r"|(?P<cvv>cvv2?|cvc2?|(?:3|three)[ ](?:numbers|digits)[ ](?:on|at)[ ]the[ ]back)"
    r"|(?P<password>password|passwort|passphrase|contrase[ñn]a|mot[ ]de[ ]passe)"
    r"|(?P<word>memorable[ ](?:word|name|place)|secret[ ]word|maiden[ ]name))(?![\p{L}])"
)
_GIVING = (
    r"(?:i|we)[ ]+(?:then[ ]+|just[ ]+|already[ ]+|stupidly[ ]+|accidentally[ ]+)?"
    r"(?:(?P<verb>gave|told|sent|texted|read|typed|entered|put|keyed|shared|said|replied(?:[ ]with)?"
    r"|provided)"
    r"(?P<to>[ ]+(?:them|him|her|it|the[ ]+(?:caller|scammer|guy|man|woman|lady|person|agent)))?"
    r"(?:[ ]+(?:out|in|back|over))?"
    r"(?:[ ]+(?:in|into|on)[ ]+(?:the|a|their|that)[ ]+(?:link|site|website|form|app|box|page|field))?"
    # "asked me to read back the 6-digit code and i did, it was 390118"
    r"|did[ ]*[,;]?[ ]*(?:it|that|the[ ]code)[ ]+(?:was|is))"
)
#: Quick tests (substrings, then plain ``re``) for :data:`_GIVING`: most messages hold none.
_GIVING_VERBS = (
    "gave", "told", "sent", "texted", "read", "typed", "entered", "put", "keyed", "shared", "said",
    "replied", "provided", "did",
)  # fmt: skip
_GIVING_VERBS_ANY = re.compile("|".join(_GIVING_VERBS))
_GIVING_HINT = re.compile(
    r"\b(?:i|we)\s+(?:\w+\s+)?(?:gave|told|sent|texted|read|typed|entered|put|keyed|shared|said|replied"
    r"|provided|did)\b",
    re.IGNORECASE,
)
_GIVEN_VALUE = (
    r"[ ]*(?:[:,\-–][ ]*|(?:as|which[ ]+(?:is|was))[ ]+)?"
    r"(?P<v>[0-9](?:[0-9]|[ \-](?=[0-9])){2,15}+(?![0-9])|[^\s'\"“”‘’]{4,64}+)"
)
_GIVEN_SECRET = (
    regex.compile(
        r"(?<![\p{L}])"
        + _SECRET_NAMES
        # the rest of its sentence and the start of the next (at most one sentence's end between
        # them: :func:`_given_secret`)
        + r"(?P<gap>(?:[^\n]|\n(?!\n)){0,160}?)(?<![\p{L}'’])"
        + _GIVING
        + r"(?P<obj>[ ]+(?:the[ ]+(?:code|number|pin|digits|password)|it|my[ ]+(?:code|pin|password)))?"
        + _GIVEN_VALUE,
        regex.IGNORECASE,
    ),
    # ... or named as what was given: "I gave him the code, 482913"
    regex.compile(
        r"(?<![\p{L}'’])(?P<gap>)"
        + _GIVING
        + r"[ ]+(?:the|my|our)[ ]+(?:[\p{L}\-]+[ ]+){0,2}?"
        + _SECRET_NAMES
        + _GIVEN_VALUE,
        regex.IGNORECASE,
    ),
)
#: After a number given: what makes it an amount or a count, not a secret ("I sent 1000 to my son").
_GIVEN_NOT_SECRET = regex.compile(
    r"[ ]*(?:dollars?|pounds?|euros?|quid|bucks|rupees?|ringgit|pesos?|usd|gbp|eur|inr|aud|cad|sgd"
    r"|to|into|from|for|times|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|%|x(?![\p{L}])"
    r"|on|yesterday|today|tonight|via|by|through|at|aside|instead|in[ ]+(?:my|the|cash|savings)"
    r"|(?:was|is|were)[ ]+(?:the|my)[ ]+(?:amount|total|fee|price|balance|limit|year))"
    r"(?![\p{L}])",
    regex.IGNORECASE,
)
#: Verbs that say a number was given to someone only with that someone or the secret named ("I sent
#: them 558102"; "I sent 2500 on Monday" is money).
_GIVEN_NEEDS_OBJECT = frozenset(
    {"sent", "put", "said", "shared", "provided", "texted", "replied", "replied with"}
)
#: Words told that are the sentence, not a memorable word: "I told them nothing".
_NOT_TOLD = frozenset(
    """nothing everything anything something goodbye absolutely straight never nope yes no sorry
    wrong right okay fine please thanks""".split()  # noqa: SIM905
)
_YEAR = re.compile(r"(?:19|20)[0-9]{2}")
#: A number going on: another digit group, or digits after a sign.
_LONGER_NUMBER = regex.compile(r"[ \-./,]?[0-9]")
#: Digits a secret of each kind has.
_GIVEN_DIGITS = {"otp": (4, 8), "pin": (4, 6), "cvv": (3, 4)}


#: A message about a password: any made-up token in it is taken for one ("Sorry the password I gave
#: before was wrong, it's actually Marmalade#77 not Marmelade#77"). Made up: letters, digits and a
#: sign a password holds (not an amount's currency, "A$10,000"; not an address, "x@y.com").
#: The words naming a password (English, German, Spanish, French, Dutch, Portuguese, Polish).
_PASSWORD_TALK = (
    "password", "passwort", "passphrase", "pwd", "contraseña", "contrasena", "mot de passe", "wachtwoord",
    "senha", "hasło", "haslo",
)  # fmt: skip
#: One quick test for any of them (plain ``re``, no look-behind: fast on any text).
_PASSWORD_TALK_ANY = re.compile("|".join(re.escape(w) for w in _PASSWORD_TALK))
#: A sign a made-up password holds, and what ends a token around it.
_PASSWORD_SIGN = re.compile(r"[!#$%^&*=?~§]")
#: ... where "&" counts only beside a digit ("Tr0ub4dor&3"; "Smith&Sons2" is a business's name).
_AMPERSAND_ONLY = re.compile(r"[^!#$%^*=?~§]*")
_AMPERSAND_BY_DIGIT = re.compile(r"[0-9]&|&[0-9]")
_TOKEN_STOP = re.compile(r"[\s\"'“”‘’()\[\]<>]")
_NOT_MADE_UP = regex.compile(
    r"[A-Za-z]{0,3}[$£€¥₹][0-9.,]+[kKmM]?|.*[$£€¥₹][0-9].*|[^@]*@[^@]*\.[^@]*|.*://.*|.*/.*|www\..*|#?[0-9\-]+"
    # a reference with its name: "order#A12345", "ref#2024", "ticket#INC0012345"
    r"|(?i:order|ref|ticket|invoice|inv|payment|txn|case|pos|no|item|booking|tx|id)[#:].*",
)


def _detect_made_up_passwords(ctx: _Context) -> None:
    """A made-up token (6-40 characters holding a letter, a digit and a sign of
    :data:`_PASSWORD_SIGN`) of a message naming a password (:data:`_PASSWORD_TALK`, as a word)."""
    low = ctx.low
    if _PASSWORD_TALK_ANY.search(low) is None or not any(_word_in(low, word) for word in _PASSWORD_TALK):
        return
    text = ctx.text
    done = 0
    for sign in _PASSWORD_SIGN.finditer(text):
        if sign.start() < done:
            continue  # in the token just read
        # the token around the sign, read at most 40 characters either way (a longer one is none)
        lo = max(0, sign.start() - 40)
        stops = list(_TOKEN_STOP.finditer(text, lo, sign.start()))
        start = stops[-1].end() if stops else lo
        after = _TOKEN_STOP.search(text, sign.end(), sign.end() + 41)
        end = after.start() if after else min(len(text), sign.end() + 41)
        done = end
        if (start == lo and lo > 0 and not stops) or (after is None and end < len(text)):
            continue
        token = text[start:end].rstrip(".,;:!?")
        if (
            6 <= len(token) <= 40
            and any(c.islower() for c in token)  # (not a reference in capitals: "INV#20245")
            and any(c.isdigit() for c in token)
            and _PASSWORD_SIGN.search(token)
            and (not _AMPERSAND_ONLY.fullmatch(token) or _AMPERSAND_BY_DIGIT.search(token))
            and _NOT_MADE_UP.fullmatch(token) is None
        ):
            why = "a made-up token in a message about a password"
            ctx.add(_P_SECRET, start, start + len(token), "password", "rule:password", why)


def _word_in(low: str, word: str) -> bool:
    """Whether ``word`` is in ``low`` at a word's start."""
    at = low.find(word)
    while at >= 0:
        if at == 0 or not (low[at - 1].isalpha() or low[at - 1] == "["):  # (not "[PASSWORD]")
            return True
        at = low.find(word, at + 1)
    return False


#: A pasted table's column headers that name personal data, and the kind of each column's values
#: (read on the header in lower case, "_" and "-" as spaces): "name,sort_code,account,amount".
_COLUMN_KINDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), kind)
    for pattern, kind in (
        (r"(?:bank )?sort ?code|s/?c|sortcode|bsb|routing(?: (?:no|number))?|aba", "sort_code"),
        (r"(?:bank )?(?:account|acct|acc|a/c) (?:no|nr|num|number|#)\.?|account|acct|a/c", "account"),
        (r"dob|d\.o\.b\.?|date of birth|birth ?date|birthday", "dob"),
        (r"ssn|social security(?: (?:no|number))?", "ssn"),
        (r"nino|ni (?:no|number)|national insurance(?: (?:no|number))?", "nino"),
        (r"passport(?: (?:no|number))?|national id|id (?:no|number)|tax id|tin|nric|aadhaa?r", "national_id"),
        (r"cvv2?|cvc2?|security code", "cvv"),
        (r"pin", "pin"),
        (r"password|passcode", "password"),
    )
)
_TABLE_SEPARATORS = (",", ";", "\t", "|")
#: The shape a value of each column kind has (its digits, and what else it may hold): a cell that
#: is not one is left (a card, an IBAN, a phone number or an address in a table are found by their
#: own detectors wherever they are).
_COLUMN_SHAPES = {
    "sort_code": re.compile(r"[0-9]{2}[ \-./]?[0-9]{2}[ \-./]?[0-9]{2}|[0-9]{3}[ \-]?[0-9]{3}|[0-9]{9}"),
    "account": re.compile(r"[0-9][0-9 \-]{4,20}[0-9]"),
    "dob": re.compile(r"[0-9]{1,4}[ \-./][0-9]{1,2}[ \-./][0-9]{1,4}|[0-9]{1,2} [A-Za-z]{3,9} [0-9]{4}"),
    "ssn": re.compile(r"[0-9]{3}[ \-]?[0-9]{2}[ \-]?[0-9]{4}"),
    "nino": re.compile(r"[A-Za-z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-Da-d]"),
    "national_id": re.compile(r"(?=.*[0-9].*[0-9].*[0-9])[A-Za-z0-9][A-Za-z0-9 \-/]{4,24}"),
    "cvv": re.compile(r"[0-9]{3,4}"),
    "pin": re.compile(r"[0-9]{4,6}"),
    "password": re.compile(r"\S{4,64}"),
}


#: A form pasted line by line: a line that is only a secret's label ("Security answer", "Password:"),
#: and the next line, one to four words, its value ("Sort code\n30-90-89\nSecurity answer\nRover").
_FORM_LABEL_LINE = regex.compile(
    r"^[ \t]*(?:(?:my|your|the)[ ])?(?:"
    + "|".join(_PASSWORD_WORDS + _SECRET_PHRASE_WORDS + _SECRET_WORD_WORDS)
    + r")[ \t]*[:：=]?[ \t]*\n[ \t]*(?P<a>[^\s:：=\[][^\n:：=\[]{0,39}?)[ \t]*(?=\n|$)",
    regex.IGNORECASE | regex.MULTILINE,
)
#: First words of a line that says something of the secret rather than giving it.
_FORM_VERBS = frozenset(
    """is was are were has have had keeps kept won't wont doesnt doesn't didnt didn't can could would will
    help please thanks thank hello hi hey you me i we what why how where when""".split()  # noqa: SIM905
)
_FORM_HINT = re.compile(r"pass|memorable|secret|security|maiden|mmn|wor|wort|senha|clave|пароль|hasło|haslo")


def _detect_form_lines(ctx: _Context) -> None:
    """:data:`_FORM_LABEL_LINE`'s values (read with the text's line breaks), unless the value says
    there is none ("not set", "don't know")."""
    lines = ctx.lines
    if "\n" not in lines or _FORM_HINT.search(ctx.low) is None:
        return
    for m in _FORM_LABEL_LINE.finditer(lines):
        value = m.group("a")
        words = value.split()
        first = words[0].lower()
        said = {w.strip(",.!?;'’\"").lower() for w in words}
        if len(words) > 4 or _NO_ANSWER.match(value) is not None or first in _ORDINARY or said & _FORM_VERBS:
            continue  # "not set", "I forgot it", "is wrong", "Hello, can you help"
        why = "the line after a line that is a secret's label"
        ctx.add(_P_SECRET, m.start("a"), m.end("a"), "password", "rule:password", why)


#: A line of a pasted conversation: who speaks, a colon, what they said ("Agent: And your date of
#: birth?", "Me: 03/04/1979", "Conseiller : ...", "Agent (Kelly): ...").
_SPEAKER_LINE = regex.compile(
    # (a chat export's time first: "[10:02] Agent: ...")
    r"^[ \t]*(?:\[[^\]\n]{1,24}\][ \t]*)?(?P<who>\p{L}[\p{L}\p{M}\p{N} ()'’.\-]{0,29}?)[ \t]*[:：][ \t]*"
    r"(?P<said>[^\n]{1," + str(_ANSWER_MAX) + r"})[ \t]*$",
    regex.MULTILINE,
)
#: The last sentence of a turn that ends in a question mark (or the last question in it).
_LAST_QUESTION = regex.compile(r"[^.!?]*\?[^?]*$")
#: At most this many lines of a pasted conversation are read as answers (each is a scan of its own).
_TRANSCRIPT_ANSWERS = 24


def _detect_transcript_answers(ctx: _Context) -> None:
    """A conversation pasted into one message: each line of the other speaker right after a line
    that asks for a personal value (:data:`_ASKED_FOR`) is read as :func:`redact_answer` reads a
    reply to that question ("Agent: Can you confirm your date of birth?\nMe: 03/04/1979")."""
    lines = ctx.lines
    if "\n" not in lines or (":" not in lines and "：" not in lines):
        return
    low = ctx.low
    if not any(word in low for word in _ASKED_HINTS):
        return
    asker: str | None = None
    label: str | None = None
    last_end = -2
    budget = _TRANSCRIPT_ANSWERS
    for m in _SPEAKER_LINE.finditer(lines):
        who = m.group("who").strip().lower()
        if last_end >= 0 and lines[last_end : m.start()].strip():
            asker = label = None  # not the next turn (blank lines between are): another part
        last_end = m.end()
        if label is not None and who != asker:
            if budget <= 0:
                return
            budget -= 1
            offset = m.start("said")
            for start, end, hit in _answer_spans(m.group("said"), label, ctx.regions):
                why = f"an answer in a pasted conversation to a question asking for {label.rstrip(':')}"
                ctx.add(hit.priority, offset + start, offset + end, hit.kind, hit.detector, why, hit.weak)
            continue
        said = m.group("said").lower()
        if "?" in said:  # the question asked ("We never ask for your PIN. How much was it?")
            asked = _LAST_QUESTION.search(said)
            said = asked.group() if asked is not None else said
        label = None
        if _ASKED_ANY.search(said) is not None:
            label = next((lab for pattern, lab in _ASKED_FOR if pattern.search(said)), None)
        asker = who


#: A word spelt out a letter at a time: "H-A-R-G-R-E-A-V-E-S", "W H I T L O C K" (four letters or more).
_SPELT_WORD = regex.compile(
    r"(?<![\p{L}\p{N}])(?:[\p{Lu}\p{N}](?:(?:[ ]?[\-.][ ]?|[ ])[\p{Lu}\p{N}]){3,39}"
    r"|[\p{Ll}\p{N}](?:[ ]?[\-.][ ]?[\p{Ll}\p{N}]){3,39})(?![\p{L}\p{N}])"
)


_SPELT_SEP = regex.compile(r"[\s\-.]")
_SPELT_BETWEEN = regex.compile(
    r"[\s.,;:!\-—()\"'’]*(?:(?:that['’]?s|it['’]?s|its|so|i\.?e\.?|spelt|spelled|spelling|as[ ]in)"
    r"[\s.,;:!\-—()\"'’]*)*",
    regex.IGNORECASE,
)


def _detect_spelt_words(ctx: _Context) -> None:
    """In a text that gives a password, a memorable word or a maiden name, that word spelt out a
    letter at a time ("my mother's maiden name is Whitlock. W H I T L O C K") is one too."""
    text = ctx.text
    runs = list(_SPELT_WORD.finditer(text))
    given = [h for h in ctx.hits if h.kind == "password"] if runs else []
    if not given:
        return
    words = {_SPELT_SEP.sub("", text[h.start : h.end]).lower() for h in given}
    spans = sorted((h.start, h.end) for h in given)
    ends = [end for _, end in spans]
    for m in runs:
        spelt = _SPELT_SEP.sub("", m.group()).lower()
        i = bisect.bisect_right(ends, m.start())
        # right after the word, only words that say it is spelt between ("... rosebud, that's r-o-s-e...");
        # not "B A N K said OK" further on (a reviewer's finding)
        near = i > 0 and _SPELT_BETWEEN.fullmatch(text, ends[i - 1], m.start()) is not None
        inside = any(lo < m.end() and m.start() < hi for lo, hi in spans)
        near = near and len(spelt) >= 5 and not spelt.isdigit()  # (not "R.S.V.P.", "2-0-2-4")
        if spelt in words or near or inside:
            start, end = m.start(), m.end()
            for lo, hi in spans:  # one hit over the word and its spelling where they overlap
                if lo < end and start < hi:
                    start, end = min(start, lo), max(end, hi)
            why = "a word spelt out letter by letter in a text that gives a secret word"
            ctx.add(_P_SECRET, start, end, "password", "rule:password", why)


#: A made-up token: a letter and a digit or a sign in it, six characters or more.
_TOKEN = regex.compile(r"(?<![^\s\"'“”‘’(\[,;:])[^\s]{6,64}")
_MADE_UP = regex.compile(r"^(?=.*\p{L}).*[\p{N}!@#$%^&*_+=?~]")
#: Trailing punctuation of a sentence, not of a password ("... Summer2024, sorry").
_TOKEN_TAIL = ".,;:)\"'”’"


def _edits(a: str, b: str) -> int:
    """Levenshtein distance of two short strings (at most 64 characters each); 4 for lengths more
    than 3 apart."""
    if abs(len(a) - len(b)) > 3:
        return 4
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def _detect_password_variants(ctx: _Context) -> None:
    """In a text that gives a password, another made-up token starting with the same five
    characters is the password too, changed or corrected: "my password Summer2023! ... I changed it
    in January to Summer2024!", "hasło to Kotek2019, nie, czekaj ... Kotek2020!"."""
    found = {ctx.text[h.start : h.end] for h in ctx.hits if h.kind == "password" and h.end - h.start >= 6}
    if not found:
        return
    heads = {v[:5].lower() for v in found}
    for m in _TOKEN.finditer(ctx.text):
        token = m.group().rstrip(_TOKEN_TAIL)
        # (the same one asked about: "my password is dragon? no, ..."); a made-up one only
        if (
            len(token) >= 6
            and token[:5].lower() in heads
            and token.rstrip("?!") not in found
            and _MADE_UP.search(token) is not None
            # a few edits from it ("Summer2023!" -> "Summer2024!"), not a merchant's descriptor or an
            # app's version sharing its start ("PAYPAL*STEAMGAMES", "Teller-v4.12.3": a reviewer's)
            and any(_edits(token, v) <= 3 for v in found if v[:5].lower() == token[:5].lower())
        ):
            why = "a made-up token like the password given in the same text"
            ctx.add(_P_SECRET, m.start(), m.start() + len(token), "password", "rule:password", why)


def _answer_spans(reply: str, label: str, regions: tuple[str, ...]) -> list[tuple[int, int, _Hit]]:
    """The values of ``reply`` read as an answer to a question asking for ``label``'s value (offsets
    in ``reply``): :func:`redact_answer`'s reading, as spans."""
    lead = _REPLY_LEAD.match(reply)
    start = lead.end() if lead else 0
    if label in _WORD_LABELS and not _a_word_answer(reply[start:]):
        return []
    prefix = label + " "
    return [
        (s - len(prefix) + start, e - len(prefix) + start, hit)
        for s, e, hit in _spans(prefix + reply[start:], regions)
        if s >= len(prefix)
    ]


def _detect_table_columns(ctx: _Context) -> None:
    """The values of a pasted table's columns whose header names personal data (:data:`_COLUMN_KINDS`):
    a header line of at least three cells, then the rows after it with as many cells."""
    lines = ctx.cells
    if "\n" not in lines:
        return
    offset = 0
    header: list[str | None] | None = None
    sep = ""
    for line in lines.split("\n"):
        if header is not None and line.count(sep) == len(header) - 1:
            at = offset
            for cell, kind in zip(line.split(sep), header, strict=True):
                value = cell.strip().strip("\"'")
                if kind is not None and (shape := _COLUMN_SHAPES.get(kind)) and shape.fullmatch(value):
                    start = at + cell.index(value)
                    why = f"a value in a table's {kind} column"
                    ctx.add(_P_LABELLED, start, start + len(value), kind, "rule:table", why)
                at += len(cell) + len(sep)
        else:
            header = None
            sep = max(_TABLE_SEPARATORS, key=line.count)
            cells = line.split(sep)
            # a header: three cells or more, each a short name ("card, pin, password all stolen" is
            # a sentence)
            if len(cells) >= 3 and all(0 < len(c.strip()) <= 24 and not _ANY_DIGIT.search(c) for c in cells):
                kinds = [_column_kind(cell) for cell in cells]
                if any(kinds):
                    header = kinds
        offset += len(line) + 1


def _column_kind(cell: str) -> str | None:
    name = cell.strip().strip("\"'").lower().replace("_", " ").replace("-", " ")
    return next((kind for pattern, kind in _COLUMN_KINDS if pattern.fullmatch(name)), None)


#: The UK's driving licence number: five letters of the surname (padded with 9), six digits of the
#: birth date (the month's tens plus 5 for a woman), two initials (9 for none), a digit and two check
#: letters, then two digits of the issue (DVLA's format): "PATEL 806154 AR9KL".
_UK_LICENCE = regex.compile(
    r"(?<![A-Za-z0-9])[A-Z9]{5}[ ]?[0-9][0156][0-9]{4}[ ]?[A-Z9]{2}[0-9][A-Z]{2}(?:[ ]?[0-9]{2})?"
    r"(?![A-Za-z0-9])"
)


#: Poland's account number (NRB) as Poles write it, without "PL": 26 digits, 2 then six groups of four
#: ("42 8168 5641 2264 0158 8854 1538"), an IBAN's check digits valid with "PL" before them.
_PL_NRB = re.compile(r"(?<![0-9])[0-9]{2}(?:[ ]?[0-9]{4}){6}(?![0-9])")


#: South Africa's identity number as it is printed, 6-4-3 ("780328 6060 082"): its birth date and
#: Luhn check digit (python-stdnum's za.idnr).
_ZA_ID_GROUPED = re.compile(r"(?<![0-9])[0-9]{6}[ ][0-9]{4}[ ][0-9]{3}(?![0-9])")


#: Identity numbers whose printed shape and check are distinctive enough to be read without a
#: label: Malaysia's MyKad (YYMMDD-PB-###G, its dashes as the card prints them: birth date and
#: birthplace code checked) and Finland's henkilötunnus (DDMMYY, the century sign, three digits and
#: the check character), of a customer's plausible age (:func:`_adult_birth_year`: a batch number
#: "231231-14-0001" or a file's "150324-1150" is not one). Not in a file name ("_", ".").
_SHAPED_CHECKED_IDS = (
    (
        re.compile(r"(?<![0-9A-Za-z_\-])[0-9]{6}-[0-9]{2}-[0-9]{4}(?![0-9A-Za-z_\-]|\.[0-9A-Za-z])"),
        std_my_nric,
        "stdnum.my.nric",
    ),
    (
        re.compile(r"(?<![0-9A-Za-z_])[0-9]{6}[\-+A-FU-Y][0-9]{3}[0-9A-Ya-y](?![0-9A-Za-z_]|\.[0-9A-Za-z])"),
        std_fi_hetu,
        "stdnum.fi.hetu",
    ),
)
#: The years of birth of customers aged 16 to 100 (this year's).
_ADULT_BIRTH_YEARS = range(datetime.date.today().year - 100, datetime.date.today().year - 15)


def _adult_birth_year(value: str, name: str) -> bool:
    """Whether ``value`` (a MyKad or a henkilötunnus) names a birth year of :data:`_ADULT_BIRTH_YEARS`."""
    try:
        born = std_my_nric.get_birth_date(value) if name == "stdnum.my.nric" else std_fi_hetu.compact(value)
    except Exception:
        return False
    if isinstance(born, datetime.date):
        return born.year in _ADULT_BIRTH_YEARS
    # the henkilötunnus's century sign: + 1800s, - and U-Y 1900s, A-F 2000s (Finland's 2023 reform)
    sign = str(born)[6].upper()
    century = 1800 if sign == "+" else 2000 if sign in "ABCDEF" else 1900
    return century + int(str(born)[4:6]) in _ADULT_BIRTH_YEARS


def _detect_shaped_ids(ctx: _Context) -> None:
    """:data:`_UK_LICENCE`, and :data:`_PL_NRB`, :data:`_ZA_ID_GROUPED` and
    :data:`_SHAPED_CHECKED_IDS` when their checks hold."""
    for pattern, validator, name in _SHAPED_CHECKED_IDS:
        for m in pattern.finditer(ctx.text):
            if validator.is_valid(m.group()) and _adult_birth_year(m.group(), name):
                why = "identity number's printed shape, date and check valid"
                ctx.add(_P_STRONG_ID, m.start(), m.end(), "national_id", name, why, weak=_REFERENCE_ONLY)
    for m in _UK_LICENCE.finditer(ctx.text):
        why = "UK driving licence number's shape"
        ctx.add(_P_STRONG_ID, m.start(), m.end(), "national_id", "rule:national_id", why)
    for m in _PL_NRB.finditer(ctx.text):
        if std_iban.is_valid("PL" + m.group().replace(" ", "")):
            why = "Polish account number (NRB): valid as an IBAN with PL"
            ctx.add(_P_IBAN, m.start(), m.end(), "iban", "stdnum.iban", why)
    for m in _ZA_ID_GROUPED.finditer(ctx.text):
        if std_za_idnr.is_valid(m.group().replace(" ", "")):
            why = "South African identity number, 6-4-3, date and check digit valid"
            ctx.add(_P_STRONG_ID, m.start(), m.end(), "national_id", "stdnum.za.idnr", why)


def _detect_secrets_given(ctx: _Context) -> None:
    """:data:`_GIVEN_SECRET`: a secret asked for and given."""
    if _GIVING_VERBS_ANY.search(ctx.low) is None or _GIVING_HINT.search(ctx.text) is None:
        return
    for pattern in _GIVEN_SECRET:
        for m in pattern.finditer(ctx.text):
            _given_secret(ctx, m)


def _given_secret(ctx: _Context, m: regex.Match[str]) -> None:
    if len(_SENTENCE_END.findall(m.group("gap"))) > 1:
        return
    kind = next(k for k in ("otp", "pin", "cvv", "password", "word") if m.group(k))
    value = m.group("v")
    start = m.start("v")
    if kind == "word":
        # a memorable word or a maiden name: one capitalised word of letters, not one of the sentence;
        # "told" needs whom ("I told him Caravaggio"; "I told Monzo" names whom)
        word = value.rstrip(".,;:!?")
        if (m.group("verb") or "").lower() == "told" and not m.group("to"):
            return
        lower = word.lower()
        if (
            len(word) < 3
            or not word.isalpha()
            or not word[0].isupper()
            or lower in _NOT_A_NAME
            or lower in _ORDINARY
            or lower in _NOT_TOLD
            or lower.endswith("ly")
        ):
            return
        why = "a memorable word told"
        ctx.add(_P_SECRET, start, start + len(word), "password", "rule:password", why)
        return
    if kind == "password":
        value = value.rstrip(".,!?;:)")
        # a password is a made-up string: a digit or a sign in it ("PayPal", "NatWest" are names)
        made_up = any(not c.isalpha() for c in value)
        if len(value) < 6 or not made_up or "@" in value or "://" in value or value[0] in "£$€¥₹#":
            return
        ctx.add(_P_SECRET, start, start + len(value), "password", "rule:password", "a password told")
        return
    if not value[0].isdigit() or any(c.isalpha() for c in value):
        return
    if _LONGER_NUMBER.match(ctx.text, m.end("v")):
        return  # the first group of a longer number (a card's): its own detector decides
    digits = sum(c.isdigit() for c in value)
    low, high = _GIVEN_DIGITS[kind]
    if not low <= digits <= high or _GIVEN_NOT_SECRET.match(ctx.text, m.end("v")):
        return
    verb = (m.group("verb") or "").lower()
    named = m.group("to") or ("obj" in m.re.groupindex and m.group("obj")) or m.re is _GIVEN_SECRET[1]
    one_by_one = " " in value.strip() and all(len(g) == 1 for g in value.split())
    if verb in _GIVEN_NEEDS_OBJECT and not named and kind != "cvv" and not one_by_one:
        return  # "I sent 2500 on Monday": money, unless sent to someone or named as the code
    if verb in ("typed", "entered", "put") and _YEAR.fullmatch(value):
        return  # "I entered 2024 by mistake as the year"
    why = f"{digits} digits told after a {kind} was asked for"
    ctx.add(_P_SECRET, start, m.end("v"), kind, f"rule:{kind}", why)


def _detect_secrets_said_around(ctx: _Context) -> None:
    """:data:`_SECRET_BEFORE_LABEL`, :data:`_OTP_FROM_TEXT` and :data:`_OTP_SAID`."""
    for m in _SECRET_BEFORE_LABEL.finditer(ctx.text):
        digits = m.end("v") - m.start("v")
        kind, fits = ("pin", 4 <= digits <= 6) if m.group("pin") else ("cvv", 3 <= digits <= 4)
        if fits:
            why = f"{digits} digits said to be the {kind.upper()}"
            ctx.add(_P_SECRET, m.start("v"), m.end("v"), kind, f"rule:{kind}", why)
    for m in _OTP_FROM_TEXT.finditer(ctx.text):
        why = "digits of a code received by text or e-mail"
        ctx.add(_P_SECRET, m.start("v"), m.end("v"), "otp", "rule:otp", why)
    low = ctx.low
    if "code" not in low and "otp" not in low and "one" not in low:
        return  # every pattern of _OTP_SAID names a code
    for pattern in _OTP_SAID:
        for m in pattern.finditer(ctx.text):
            for group in ("v", "w"):
                if group in pattern.groupindex and m.group(group):
                    digits = sum(c.isdigit() for c in m.group(group))
                    if 4 <= digits <= 8:
                        why = f"{digits} digits said to be a one-time code"
                        ctx.add(_P_SECRET, m.start(group), m.end(group), "otp", "rule:otp", why)


def _detect_spelt_secrets(ctx: _Context) -> None:
    for m in _SPELT_SECRET.finditer(ctx.text):
        words = len(regex.findall(_DIGIT_WORD, m.group("v"), regex.IGNORECASE))
        if m.group("pin"):
            kind, fits = "pin", 4 <= words <= 6
        elif m.group("otp"):
            kind, fits = "otp", 4 <= words <= 8
        else:
            kind, fits = "cvv", 3 <= words <= 4
        # (not a count: "I've tried the pin one, two, three, four times")
        digits = _spelt_digits(m.group("v"))
        if fits and not (_counting(digits) and len(set(digits)) > 1):
            why = f"{words} number words after a {kind.upper()} label"
            ctx.add(_P_SECRET, m.start("v"), m.end("v"), kind, f"rule:{kind}", why)


def _detect_lookalike_cards(ctx: _Context) -> None:
    """Card numbers with O/o typed for 0 or l/I for 1 in their digit groups (:data:`_LOOKALIKE_CARD`)."""
    text = ctx.text
    if "O" not in text and "o" not in text and "I" not in text and "l" not in text:
        return
    # Where a card holding such a letter may start: up to _LOOKALIKE_REACH characters before it.
    windows: list[list[int]] = []
    for m in _LOOKALIKE_NEAR_DIGIT.finditer(text):
        lo, hi = max(0, m.start() - _LOOKALIKE_REACH), m.start() + 1
        if windows and lo <= windows[-1][1]:
            windows[-1][1] = hi
        else:
            windows.append([lo, hi])
    for lo, hi in windows:
        # A match starting before hi ends before hi + 39: the end bound never cuts one short.
        for m in _LOOKALIKE_CARD.finditer(text, lo, min(len(text), hi + 2 * _LOOKALIKE_REACH)):
            if m.start() >= hi:
                break
            _lookalike_card(ctx, m)


def _lookalike_card(ctx: _Context, m: re.Match[str]) -> None:
    candidate = m.group()
    digits = candidate.translate(_LOOKALIKE_DIGITS)
    if digits == candidate:
        return  # no letter in it: :func:`_card` decided
    letters = sum(ch in "OoIl" for ch in candidate)
    groups = _LOOKALIKE_GROUP.findall(candidate)
    if 3 * letters > len(_digits(digits)) or not all(map(_ANY_DIGIT.search, groups)):
        return  # mostly letters, or a group without a digit: a word, not a mistyped number
    found = _card_match(digits)
    if found and found[0] == "card":
        why = f"{found[3]}, with a letter O or l read as 0 or 1"
        grouped = not candidate[: found[1]].isalnum()  # in groups: the card it looks like (_card)
        weak = 0 if grouped else _REFERENCE_ONLY
        ctx.add(_P_CARD, m.start(), m.start() + found[1], "card", "stdnum.luhn", why, weak=weak)


_BRANDS = (
    ("34", "American Express"),
    ("37", "American Express"),
    ("4", "Visa"),
    ("51", "Mastercard"),
    ("52", "Mastercard"),
    ("53", "Mastercard"),
    ("54", "Mastercard"),
    ("55", "Mastercard"),
    ("22", "Mastercard"),
    ("23", "Mastercard"),
    ("24", "Mastercard"),
    ("25", "Mastercard"),
    ("26", "Mastercard"),
    ("27", "Mastercard"),
    ("6011", "Discover"),
    ("65", "Discover"),
    ("64", "Discover"),
    ("35", "JCB"),
    ("36", "Diners Club"),
    ("38", "Diners Club"),
    ("30", "Diners Club"),
    ("62", "UnionPay"),
    ("5", "Maestro"),
    ("6", "Maestro"),
)


@lru_cache(maxsize=4096)
def _card_why(digits: str) -> str | None:
    if not 13 <= len(digits) <= 19 or digits[0] not in "23456" or not std_luhn.is_valid(digits):
        return None
    if digits[0] == "2" and not (len(digits) == 16 and "2221" <= digits[:4] <= "2720"):
        return None  # the 2-series is Mastercard's only: 16 digits, 2221-2720
    if digits[0] == "3" and digits[1] not in "0456789":
        return None  # Diners 30/36/38/39, Amex 34/37, JCB 35
    brand = next((name for prefix, name in _BRANDS if digits.startswith(prefix)), f"issuer digit {digits[0]}")
    return f"Luhn-valid {len(digits)} digits, {brand}"


_MORE_GROUPS = re.compile(_SEP + "[0-9]")
_FOUR_MORE = re.compile(_SEP + "[0-9]{4}")


def _card(ctx: _Context, m: re.Match[str], again: bool = False) -> bool:
    """Report what ``m`` (a :data:`_CARD` match) holds; True when a Luhn-valid card was found. With
    ``again`` (a window read again from a later group of a run, see :func:`_detect_digit_clusters`),
    only a card that no further 4-digit group follows, and never a typo."""
    found = _card_match(m.group())
    if not found:
        return False
    kind, length, detector, why = found
    if again and (kind != "card" or _FOUR_MORE.match(ctx.text, m.start() + length)):
        return False
    if kind == "card":
        # A labelled order or transaction number may be Luhn-valid, one run of digits ("order
        # 4111111111111111"): the label says what it is. Written in a card's digit groups ("ref
        # 4111-1111-1111-1111 exp 12/27") it is taken for the card it looks like, label or not.
        grouped = not m.group()[:length].isdigit()
        weak = 0 if grouped else _REFERENCE_ONLY
        ctx.add(_P_CARD, m.start(), m.start() + length, kind, detector, why, weak=weak)
        return True
    if not _MORE_GROUPS.match(ctx.text, m.end()):
        # A card that fails Luhn (a typo): no date or amount looks like it, a labelled reference may.
        # From 16 digits on no phone number is that long, so a phone read in its first groups loses.
        priority = _P_CARD_SHAPE if len(_digits(m.group())) >= 16 else _P_NUMBER
        ctx.add(priority, m.start(), m.start() + length, kind, detector, why, weak=_REFERENCE_ONLY)
    return False


def _loose_card(ctx: _Context, m: re.Match[str]) -> None:
    """A Luhn-valid card number in a grouping :data:`_CARD` does not know ("4487 5749 1186 252 0"): the
    most groups from the first that hold 13-19 digits and pass, hidden whole as ``[NUMBER]`` (such a
    grouping is not a card's, so the kind is not claimed; without this a phone number read in its
    first groups left the last digits in the clear)."""
    groups = list(_DIGIT_RUN.finditer(m.group()))
    for k in range(len(groups), 1, -1):
        digits = "".join(g.group() for g in groups[:k])
        if len(digits) > 19:
            continue
        if len(digits) < 13:
            return
        why = _card_why(digits)
        if why:
            end = m.start() + groups[k - 1].end()
            why = f"{why}, in a grouping no card uses"
            ctx.add(_P_CARD_SHAPE, m.start(), end, "number", "stdnum.luhn", why, weak=_REFERENCE_ONLY)
            return


@lru_cache(maxsize=4096)
def _card_match(candidate: str) -> tuple[str, int, str, str] | None:
    """(kind, length, detector, why) for a card-shaped ``candidate``, None when it is not one."""
    groups = list(_DIGIT_RUN.finditer(candidate))
    digits = "".join(g.group() for g in groups)
    why = _card_why(digits)
    if why:
        return "card", len(candidate), "stdnum.luhn", why
    if len(groups) == 5:  # "4111 1111 1111 1111 123": a card and what follows it
        why = _card_why(digits[:16])
        if why:
            return "card", groups[3].end(), "stdnum.luhn", why
    if len(groups) > 1:
        return "number", len(candidate), "rule:number", f"card-shaped {len(digits)} digits, fails Luhn"
    return None


_SHAPE_NAMES = {
    "ric": "stdnum.cn.ric",
    "nir": "stdnum.fr.nir",
    "ahv": "stdnum.ch.ssn",
    "cpf": "stdnum.br.cpf",
    "rrn": "stdnum.kr.rrn",
    "aadhaar": "stdnum.in_.aadhaar",
    "dni": "stdnum.es.dni",
}


def _numeric_shape(ctx: _Context, m: re.Match[str]) -> None:
    kind = m.lastgroup or ""
    start, end = m.span()
    value = m.group()
    if kind == "ssn":
        digits = _digits(value)
        if _valid("stdnum.us.ssn", digits):
            ctx.add(
                _P_SSN, start, end, "ssn", "stdnum.us.ssn", "SSN format, valid area/group/serial", weak=_WEAK
            )
        elif _valid("stdnum.us.itin", digits):
            ctx.add(_P_SSN, start, end, "national_id", "stdnum.us.itin", "valid US ITIN", weak=_WEAK)
        return
    if kind == "sort":
        ctx.add(
            _P_SORT, start, end, "sort_code", "rule:sort_code", "UK sort code format 12-34-56", weak=_WEAK
        )
        return
    name = _SHAPE_NAMES.get(kind)
    if name and _valid(name, _compact(value)):
        weak = kind == "aadhaar"  # one Verhoeff digit: a protection (a reference...) wins
        priority = _P_WEAK_ID if weak else _P_STRONG_ID
        ctx.add(
            priority,
            start,
            end,
            "national_id",
            name,
            "checksum valid",
            weak=_WEAK if weak else 0,
        )


# Unlabelled runs that a national-id checksum claims before a phone number does (1 in 100 or rarer
# by chance), by length. Shorter checks (1 in 10: pesel, idnr, bsn, inn, jp) need a label.
_RUN_IDS: dict[int, tuple[str, ...]] = {
    11: ("stdnum.br.cpf", "stdnum.tr.tckimlik"),
    12: ("stdnum.in_.aadhaar",),
    13: ("stdnum.ch.ssn", "stdnum.kr.rrn"),
    15: ("stdnum.fr.nir",),
    18: ("stdnum.cn.ric",),
}


def _long_run(ctx: _Context, start: int, end: int) -> None:
    text = ctx.text
    size = end - start
    if size == 8:
        ctx.add(
            _P_ACCOUNT,
            start,
            end,
            "account",
            "rule:account",
            "8 digits (UK account number format)",
            weak=_WEAK,
        )
        return
    for name in _RUN_IDS.get(size, ()):
        if _valid(name, text[start:end]):
            ctx.add(_P_WEAK_ID, start, end, "national_id", name, "checksum valid", weak=_WEAK)
            break
    ctx.add(
        _P_NUMBER,
        start,
        end,
        "number",
        "rule:number",
        f"{size}-digit run, no validator claims it",
        weak=_WEAK,
    )


# Phone numbers --------------------------------------------------------------------------------------


class _RegionInfo(NamedTuple):
    prefix: str
    lengths: frozenset[int]


@lru_cache(maxsize=256)
def _region_info(region: str) -> _RegionInfo | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.general_desc is None:
        return None
    return _RegionInfo(metadata.national_prefix or "", frozenset(metadata.general_desc.possible_length or ()))


#: (candidate, regions) -> (the region where it is valid, the region where it is possible when it is
#: valid nowhere: :func:`_possible_region`), "" for none.
_PHONE_CACHE: dict[tuple[str, tuple[str, ...]], tuple[str, str]] = {}


#: Regions whose trunk prefix is 0 but whose mobile numbers are commonly written without it (India's
#: "98765 43210", China's "138 0013 8000", Brazil's "(11) 91234-5678", Turkey's "532 123 45 67").
#: Elsewhere three or more round figures in a row (each group ending in 0) count as a number of such
#: a region only with its 0: read without it "100 200 300" is a valid French number and "500 1000
#: 2000" a British one (lists of amounts). Other groupings are read as before, a number without its
#: 0 included (a review found numbers typed with their country code and no "+" hidden only so).
_WRITTEN_WITHOUT_TRUNK: Final = frozenset({"IN", "CN", "BR", "TR"})


def _groups(candidate: str) -> int:
    return len(_PHONE_TOKEN.findall(candidate))


def _phone_region(ctx: _Context, candidate: str, international: bool) -> str | None:
    """The region where ``candidate`` is a valid number ("" if none); None once the budget is spent."""
    check = _phone_check(ctx, candidate, international)
    return None if check is None else check[0]


def _possible_phone_region(ctx: _Context, candidate: str, international: bool) -> str | None:
    """The region where ``candidate``, valid nowhere, is a possible number (:func:`_possible_region`):
    an international one ("+44 7700 900123"), or one of the first region written with its national
    (trunk) prefix ("07700 900123" in GB). "" if not; None once the budget is spent."""
    check = _phone_check(ctx, candidate, international)
    return None if check is None else check[1]


def _phone_check(ctx: _Context, candidate: str, international: bool) -> tuple[str, str] | None:
    """(:func:`_phone_region`, :func:`_possible_phone_region`) from the same parses, cached; None once
    the budget is spent."""
    key = (candidate, () if international else ctx.regions)
    cached = _PHONE_CACHE.get(key)
    if cached is not None:
        return cached
    digits = _digits(candidate)
    found = possible = ""
    if international:
        ctx.phone_calls += 1
        if ctx.phone_calls > PHONE_BUDGET:
            return None
        found, possible = _parse(candidate, None)
    else:
        for region in ctx.regions:
            info = _region_info(region)
            if info is None:
                continue
            trunk = bool(info.prefix) and digits.startswith(info.prefix)
            if (
                info.prefix == "0"
                and not trunk
                and region not in _WRITTEN_WITHOUT_TRUNK
                and _groups(candidate) > 2
            ):
                continue  # "100 200 300", "500 1000 2000": amounts, not a number without its 0
            if len(digits) not in info.lengths and not (
                trunk and len(digits) - len(info.prefix) in info.lengths
            ):
                continue
            ctx.phone_calls += 1
            if ctx.phone_calls > PHONE_BUDGET:
                return None
            found, maybe = _parse(candidate, region)
            if found:
                possible = ""
                break
            if region == ctx.regions[0] and trunk and maybe == region:
                possible = maybe
        if not found and not digits.startswith("0") and 11 <= len(digits) <= 15:
            # A number with its country code and no "+" ("44 7911 123 456", "4420 7946 0958"): valid
            # as an international number (these were hidden only as German numbers without their 0,
            # which the trunk rule above no longer reads; a review's finding)
            ctx.phone_calls += 1
            if ctx.phone_calls > PHONE_BUDGET:
                return None
            found = _parse("+" + digits, None)[0]
    if len(_PHONE_CACHE) > 32768:
        _PHONE_CACHE.clear()
    _PHONE_CACHE[key] = found, possible
    return found, possible


def _parse_valid(candidate: str, region: str | None) -> str:
    return _parse(candidate, region)[0]


@lru_cache(maxsize=4096)
def _parse(candidate: str, region: str | None) -> tuple[str, str]:
    """(the region where ``candidate`` is a valid number, the region where it is a possible one), ""
    for neither. Possible (:func:`_possible_region`) is asked only of a number that is not valid."""
    try:
        number = phonenumbers.parse(candidate, region)
        if phonenumbers.is_valid_number(number):
            return phonenumbers.region_code_for_number(number) or region or "001", ""
        return "", _possible_region(number)
    except Exception:
        return "", ""


def _possible_region(number: phonenumbers.PhoneNumber) -> str:
    """The main region of ``number``'s country code when ``phonenumbers`` calls it possible there:
    a length that region's numbers have (``is_possible_number_with_reason``, IS_POSSIBLE: not a
    local-only length) and its national number in the region's general pattern (the pattern every
    number of the region matches, assigned or not: Ofcom's drama range 07700 900000-900999 is one).
    "" if not."""
    if phonenumbers.is_possible_number_with_reason(number) != phonenumbers.ValidationResult.IS_POSSIBLE:
        return ""
    region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    pattern = metadata.general_desc.national_number_pattern if metadata and metadata.general_desc else None
    if not pattern or re.fullmatch(pattern, str(number.national_number)) is None:
        return ""
    return region


#: A phone-shaped text's numbers: (start, end, region, international, valid) each (valid: not just
#: possible).
_Outcome = tuple[tuple[int, int, str, bool, bool], ...]
_PHONE_OUTCOMES: dict[tuple[str, tuple[str, ...], tuple[tuple[int, int], ...]], _Outcome] = {}


def _phone(ctx: _Context, start: int, end: int) -> None:
    i = bisect.bisect_right(ctx.strong_starts, start)
    if i and ctx.strong_ends[i - 1] >= end:
        return  # inside a card, an IBAN, an e-mail address...: nothing to look for
    outcome = _phone_numbers(ctx, start, end)
    if outcome is None:  # the parse budget is spent: hide what looks like a number, unchecked
        _unchecked_number(ctx, start, end)
    elif not outcome:
        _labelled_phone(ctx, start, end)
    else:
        _add_phones(ctx, start, outcome)


def _phone_run(ctx: _Context, start: int, end: int) -> None:
    """A run of more digit groups than one phone candidate holds (a list of numbers, one per line or
    between slashes), read :data:`_PHONE_WINDOW` groups at a time. A number found in a window is kept
    unless it reaches the window's cut end (it may go on past it): the next window starts at the group
    after the last number kept, or at that cut number's first group. Where a window holds none, the
    next starts a few groups on, so that a number across the cut is read whole."""
    tokens = [m.span() for m in _PHONE_TOKEN.finditer(ctx.text, start, end)]
    if len(tokens) <= 15 and all(hi - lo == 1 for lo, hi in tokens):
        _spelt_out_phone(ctx, start, end, len(tokens))
        return
    i = 0
    while i < len(tokens):
        j = min(i + _PHONE_WINDOW, len(tokens))
        lo, hi = tokens[i][0], tokens[j - 1][1]
        if ctx.text[lo - 1 : lo] == "+":
            lo -= 1  # an international number's "+" is part of it
        elif ctx.text[lo - 2 : lo] == "+ ":
            lo -= 2
        outcome = _phone_numbers(ctx, lo, hi)
        if outcome is None:
            _unchecked_number(ctx, lo, hi)
            i = j
            continue
        cut = j < len(tokens)
        kept = tuple(found for found in outcome if not cut or lo + found[1] < hi or found[0] == 0)
        if kept:
            _add_phones(ctx, lo, kept)
        ends = [lo + found[1] for found in kept]
        cut_starts = [lo + found[0] for found in outcome if found not in kept]
        if cut_starts:
            nxt = next(k for k in range(i, j) if tokens[k][0] >= cut_starts[0])
        elif ends:
            nxt = next((k for k in range(i, len(tokens)) if tokens[k][0] >= max(ends)), len(tokens))
        elif cut:
            nxt = j - 3  # a number of up to four groups may start in the last three
        else:
            break
        i = max(nxt, i + 1)


def _spelt_out_phone(ctx: _Context, start: int, end: int, size: int) -> None:
    """A number typed digit by digit ("9 8 7 6 5 4 3 2 1 0", "+ 4 4 7 9 1 1 1 2 3 4 5 6"), 8-15
    digits: read as the digits it spells, a phone number when a region validates them (with its "+",
    an international one) or when a phone label comes right before it. Read in windows of seven
    groups, as other runs are, no window held enough digits to be a number (a trial's finding)."""
    text = ctx.text
    international = text[start] == "+"
    # Read as typed, so that a region whose numbers start with a trunk 0 needs it here as in any
    # other grouping of three or more (:data:`_WRITTEN_WITHOUT_TRUNK`).
    region = _phone_region(ctx, text[start:end], international) if size >= 8 else ""
    if region is None:
        _unchecked_number(ctx, start, end)
    elif region:
        context = _PHONE_WORDS.search(text, max(0, start - 40), start) is not None
        why = f"valid {region} number typed digit by digit"
        priority = _P_PHONE_INTL if international else _P_PHONE_CONTEXT if context else _P_PHONE
        ctx.add(priority, start, end, "phone", "phonenumbers", why, weak=0 if international else _WEAK)
    else:
        _labelled_phone(ctx, start, end)


def _unchecked_number(ctx: _Context, start: int, end: int) -> None:
    if len(_digits(ctx.text[start:end])) >= 9:
        why = "phone-shaped, not checked: parse budget spent"
        ctx.add(_P_NUMBER, start, end, "number", "rule:number", why, weak=_WEAK)


def _phone_numbers(ctx: _Context, start: int, end: int) -> _Outcome | None:
    """The phone numbers in ``text[start:end]`` (offsets relative to ``start``), read without the
    groups a stronger finding or a protection holds; None when the parse budget is spent."""
    candidate = ctx.text[start:end]
    outcome = _cached_phone_outcome(ctx, candidate, ())
    # A national number must not take groups that a stronger finding or a protected span (a date, an
    # amount...) holds: if one found does, the candidate is looked at again without them
    # ("4111 1111 1111 1111 07700 900123", "2024-03-15 07700 900123").
    blocked: tuple[tuple[int, int], ...] = ()
    for spans in (lambda: ctx.strong_within(start, end), lambda: _local_protections(ctx, start, end)):
        if not outcome or not any(
            not international and not any(lo < e and b < hi for b, e in blocked)
            for lo, hi, _, international, _ in outcome
        ):
            break
        more = tuple(
            (max(s, start) - start, min(e, end) - start) for s, e in spans() if s < end and start < e
        )
        if more:
            blocked = tuple(sorted({*blocked, *more}))
            outcome = _cached_phone_outcome(ctx, candidate, blocked)
    return outcome


def _add_phones(ctx: _Context, start: int, outcome: _Outcome) -> None:
    """Adds the numbers of ``outcome`` (offsets relative to ``start``) as findings."""
    text = ctx.text
    context: bool | None = None
    for lo, hi, region, international, valid in outcome:
        status = "valid" if valid else "possible (not valid)"
        if international:
            plus = text[start + lo] == "+"
            how = "international" if plus else "international (00)"
            why = f"{status} {how} number, {region}"
            # A possible number only gives way to what a valid one does not: "+" to a labelled
            # reference, "00" (a reference's or an amount's leading zeros) to any protection.
            weak = 0 if valid else _REFERENCE_ONLY if plus else _WEAK
            if (valid and _business_number(text[start + lo : start + hi], None)) or _helpline(
                text, start + lo, start + hi
            ):
                _protect_business(ctx, start + lo, start + hi)
                continue
            ctx.add(_P_PHONE_INTL, start + lo, start + hi, "phone", "phonenumbers", why, weak=weak)
            continue
        if _amounts_in_pairs(text, start + lo, start + hi):
            continue
        if (
            (valid and _business_number(text[start + lo : start + hi], region))
            or _DESCRIPTOR_BEFORE.search(text, max(0, start + lo - 32), start + lo)
            or _helpline(text, start + lo, start + hi)
        ):
            _protect_business(ctx, start + lo, start + hi)
            continue
        if context is None:
            context = _PHONE_WORDS.search(text, max(0, start + lo - 40), start + lo) is not None
        priority = _P_PHONE_CONTEXT if context else _P_PHONE
        why = f"{status} {region} number, national format"
        ctx.add(priority, start + lo, start + hi, "phone", "phonenumbers", why, weak=_WEAK)


#: ``phonenumbers``' types of number that an organisation holds, not a person: freephone (0800,
#: 1-800), shared cost (0845, 1300) and universal access numbers (UK 03, 0345). Not premium rate:
#: the UK's 09 numbers are written as the Philippines' mobiles are ("0918 227 4490").
#: A bank's helpline, a merchant's or a scammer's line is not a customer's personal data, and the
#: agent needs it ("I rang 0345 300 0116 and waited 47 minutes", "is 0800 028 4176 your fraud
#: line?"): four labelled sets written independently (sessions 51-53) all marked such numbers to
#: be kept or either way, none to be hidden.
_BUSINESS_TYPES = frozenset(
    {
        phonenumbers.PhoneNumberType.TOLL_FREE,
        phonenumbers.PhoneNumberType.SHARED_COST,
        phonenumbers.PhoneNumberType.UAN,
    }
)


def _business_number(candidate: str, region: str | None) -> bool:
    """Whether ``candidate``, valid in ``region`` (None: written with its country code), is one of
    :data:`_BUSINESS_TYPES` there, written in that region's own grouping of such a number
    (``phonenumbers``' national or international format; a North American number's leading 1 aside).

    The grouping is the only evidence of which country's number it is where the other regions'
    numbers read the same digits: "0345 300 0116" is a UK bank's line, and a landline in Halle or
    Bergamo; "030/12345678" a UK 03 number read without its grouping, and a Berlin landline. So
    "0345 300 0116" and "1-800-328-4120" are kept and "030/12345678", "03457 404 404" or
    "03453000116" are not; a bank whose own region reads them otherwise names it first
    (``TELLER_PHONE_REGIONS``).
    """
    written = tuple(_DIGIT_RUN.findall(candidate))
    if len(written) < 2:
        return False
    if _business_reading(written, region):
        return True
    # another country's freephone in its own grouping ("1800 033 103": read as India's first, where
    # 1800 numbers are grouped otherwise, and Ireland's and Australia's as written)
    return (
        region is not None
        and written[0].startswith("1")
        and any(_business_reading(written, other) for other in _FREEPHONE_REGIONS if other != region)
    )


#: Countries whose 1800 and 1300 numbers customers quote, tried in their own grouping when the region
#: a number starting with 1 was read in finds none.
_FREEPHONE_REGIONS = ("IE", "AU", "US", "CA", "SG")


@lru_cache(maxsize=4096)
def _business_reading(written: tuple[str, ...], region: str | None) -> bool:
    try:
        number = phonenumbers.parse(" ".join(written) if region else "+" + " ".join(written), region)
    except phonenumbers.NumberParseException:
        return False
    if phonenumbers.number_type(number) not in _BUSINESS_TYPES:
        return False
    formats = phonenumbers.PhoneNumberFormat
    style = formats.NATIONAL if region else formats.INTERNATIONAL
    groups = tuple(_DIGIT_RUN.findall(phonenumbers.format_number(number, style)))
    if region and number.country_code == 1 and written[0] == "1":
        written = written[1:]
    if region == "GB" and 4 <= len(written[0]) <= 5 and written[0].startswith(("03", "080")):
        # UK banks print their lines in several groupings ("03457 404 404", "0800 9 123 123",
        # "03457 30 20 11"): a whole 03 or 080 prefix in the first group is the UK's grouping
        return sum(map(len, written)) == 11
    return written == groups


#: A card statement's merchant descriptor right before a number ("PAYPAL *STEAMGAMES 4029357733",
#: "AMAZON PRIME*2T4RF 8885550199", "SQ *COFFEE 0207..."): the merchant's phone number, printed by
#: the card scheme, not the customer's. A name in capitals with the scheme's "*", on the same line.
_DESCRIPTOR_BEFORE = re.compile(r"[A-Z0-9]{2,}[ ]?\*[ ]?[A-Z0-9][A-Z0-9 .&'-]{1,24}[ ]$")


#: An organisation's line named right before its number: "your customer service on 0345 ...", "votre
#: service client au 09 69 32 15 15", "御行のフリーダイヤル0120-123-456", "fraud line: ...". Whoever the
#: number belongs to, it is not the customer's own (a bank's line, a merchant's, a caller's claim).
_HELPLINE_BEFORE = regex.compile(
    r"(?:(?<![\p{L}])(?:help[ ]?line|hot[ ]?line|free[ ]?phone|toll[ -]?free"
    r"|customer[ ](?:service|services|care|support)(?:[ ](?:line|team|number|desk))?"
    r"|fraud[ ](?:line|team|department|hotline)"
    r"|service[ ]client(?:s|èle)?|num[ée]ro[ ]vert|numero[ ]verde|servizio[ ]clienti"
    r"|atenci[óo]n[ ]al[ ]cliente|servi[çc]o[ ]de[ ]atendimento|kundenservice|kundendienst|servicehotline"
    r"|klantenservice|infolinia|горяч(?:ая|ую|ей)[ ]лини[яюи]|خدمة[ ]العملاء)"
    r"|客服(?:电话|熱線|热线|電話)?|客户服务(?:电话|热线)?|フリーダイヤル|コールセンター|고객센터)"
    # a word between, of calling or of the bank ("klantenservice gebeld (", "خدمة العملاء للبنك"), never
    # the customer's own ("customer service, my 07700 ...": a reviewer's finding), and a bracket
    r"(?:[ ]{1,3}(?:called|rang|phoned|dialled|dialed|gebeld|appelé|llamé|angerufen|chiamato|liguei"
    r"|للبنك|اتصلت))?"
    r"[ ]{0,3}(?:(?:number|no\.?|line|nummer|num[ée]ro|n[úu]mero|numer)[ ]{0,3})?"
    r"(?:(?:at|on|is|au|al|est|es|ist|è|é|:|-|–|=|：|\(|（)[ ]{0,3}){0,2}$",
    regex.IGNORECASE,
)


#: After a number: the customer says it is theirs ("... on 07700 900123 is my own mobile").
_MINE_AFTER = regex.compile(
    r"[ ,]{0,3}(?:(?:is|it['’]?s|that['’]?s|=|-|—)[ ]{0,3})?"
    r"(?:my|mine|our|mijn|mein|meine|mon|ma|mi|mio|mia|meu|minha|мой|моя)(?![\p{L}])",
    regex.IGNORECASE,
)


def _helpline(text: str, start: int, end: int) -> bool:
    """Whether the number ``text[start:end]`` is named an organisation's line right before it
    (:data:`_HELPLINE_BEFORE`) and not said to be the customer's own right after it."""
    return (
        _HELPLINE_BEFORE.search(text, max(0, start - 48), start) is not None
        and _MINE_AFTER.match(text, end) is None
    )


def _protect_business(ctx: _Context, start: int, end: int) -> None:
    """An organisation's number stays, and no weaker reading (an account, a number) takes it."""
    ctx.soft.append((start, end))
    ctx.protect_ready = False


#: Words that make digits written in pairs a phone number: :data:`_PHONE_WORDS`, or a word for
#: "number" (English, Spanish, Portuguese, French, Italian, German, Dutch, Polish, Turkish, Russian,
#: Chinese, Japanese, Korean, Hindi, Arabic) or "reach".
_PAIRS_CUE = regex.compile(
    _PHONE_WORDS.pattern
    + r"|(?<![\p{L}])(?:numbers?|num|no\.?|nr\.?|reach|sms|n[úu]mero|num[ée]ro|numero|nummer|numer"
    r"|numara(?:m|sı)?|номер|mobil"
    # calling verbs: "llámame al 690 120 450", "appelle-moi au", "ruf mich an", "chiamami al"
    r"|ll[áa]m(?:ame|anos|a|ar|enme)|appel(?:le|ez)(?:-moi)?|ruf|anrufen|chiamami|liga(?:-me)?|call|ring|text"
    r"|whats[ ]?app|kontakt|landline|my[ ]line|reach[ ]me)(?![\p{L}])|号码|號碼|番号|번호|नंबर|رقم",
    regex.IGNORECASE,
)

#: Where one can be reached, right before a number: "I'm on 690 120 450", "I am on", "im on",
#: "I'm now on:", "I'm at", "I am reachable on" (:func:`_amounts_in_pairs`: a phone number even
#: after a word of money, "Trouble with the payment, I am on 690 120 450"), unless a rate follows
#: it (:data:`_RATE_AFTER`).
_REACHED_ON = regex.compile(
    r"(?<![\p{L}])i(?:['’]m|[ ]?am|m)(?:[ ]now)?(?:[ ]reachable)?[ ](?:on|at)[ ]*+:?[ ]*+$",
    regex.IGNORECASE,
)
#: A rate right after a number: "I'm on 600 700 800 a month", "per week", "daily" (an income, not
#: where one can be reached: a reviewer's probe).
_RATE_AFTER = regex.compile(
    r"[ ]*+(?:(?:a|an|per|each|every)[ ](?:day|week|fortnight|month|year)|daily|weekly|fortnightly"
    r"|monthly|yearly|annually|p[./]?[wma])(?![\p{L}])",
    regex.IGNORECASE,
)


def _clause_start(text: str, lo: int, hi: int) -> int:
    """Where the sentence holding ``text[hi]`` starts (:data:`_SENTENCE_END`), at ``lo`` at the
    earliest: "Payments failed again. Laura 690 120 450" is a new sentence."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text, lo, hi)]
    return ends[-1] if ends else lo


def _amounts_in_pairs(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]``, a number found in national format without a trunk 0, reads as a
    list of amounts or scores: four or more groups of one or two digits, each a multiple of five
    ("fees 15 20 25 30 35", "5 10 15 20 25", "10 20 30 40 50"), or three or more groups of three
    digits, each a multiple of ten ("payments of 250 500 750", "I paid 600 700 800", "200 300 400
    500"; three groups only after a word of money in the same sentence, :data:`_AMOUNT_CUE`, or
    before a currency, "150 250 350 Euro", since a Spanish, Polish or Portuguese mobile has that
    shape: "Juan Perez 690 120 450"), with no phone word or word for "number" within 40 characters
    before it or 30 after, nor "I'm on" right before it (:data:`_REACHED_ON`). Such lists were
    hidden as Indian, Brazilian, Spanish, Polish or Portuguese numbers without their 0 (a review's
    and a PII probe's findings). Otherwise they are a phone number: "33 6 12 34 56 78" (a country
    code without its "+"), "98 76 54 32 10", "612 345 678" (the chance that every group of a number
    ends in 0 or 5 is 1 in 5 to the power of its groups; in 0, 1 in 10 to it)."""
    groups = _PHONE_TOKEN.findall(text, start, end)
    if text[start] in "0(":
        return False
    pairs = len(groups) >= 4 and not any(len(g) > 2 or int(g) % 5 for g in groups)
    hundreds = len(groups) >= 3 and all(len(g) == 3 and g[0] != "0" and int(g) % 10 == 0 for g in groups)
    if (
        hundreds
        and len(groups) == 3
        and _AMOUNT_CUE.search(text, _clause_start(text, max(0, start - 40), start), start) is None
        and _CURRENCY_FOLLOWS.match(text, end) is None
    ):
        # three groups of three: a Spanish, Polish or Portuguese mobile's shape ("Juan Perez 690
        # 120 450"), read as amounts only where money is spoken of just before
        return False
    if not (pairs or hundreds):
        return False
    if _REACHED_ON.search(text, max(0, start - 24), start) and not _RATE_AFTER.match(text, end):
        return False
    before = _PAIRS_CUE.search(text, max(0, start - 40), start)
    return before is None and _PAIRS_CUE.search(text, end, end + 30) is None


#: A phone label right before a number: "my mobile is", "手機", "ring mig på", "whatsapp:".
_PHONE_LABEL = regex.compile(
    r"(?<![\p{L}])(?:(?:tele)?phone(?:[ ]number)?|tel\.?|mobile?|cell(?:[ ]?phone)?|whats[ ]?app"
    r"|call[ ](?:me|us)(?:[ ](?:on|at))?|ring(?:[ ](?:me|mig|mij))?|text[ ](?:me|us)(?:[ ](?:on|at))?"
    r"|handy|natel|móvil|movil"
    r"|tel[ée]fono|téléphone|telephone|portable|telefon|telefone|telefoon|cellulare|celular|komórka|komorka"
    r"|телефон|тел\.?|моб\.?|puhelin|matkapuhelin|contact)(?![\p{L}])"
    r"|手机|手機|电话|電話|携帯|전화|휴대폰|핸드폰|هاتف|جوال|फ़ोन|फोन|मोबाइल"
)
_PHONE_LABEL_GAP = regex.compile(r"[^0-9\n]{0,24}")


def _labelled_phone(ctx: _Context, start: int, end: int) -> None:
    """A number no region validates is still a phone number right after a phone label, when it has
    7-15 digits (8-digit Singapore, Hong Kong or Nordic numbers...)."""
    text = ctx.text
    size = len(_digits(text[start:end]))
    if not 7 <= size <= 15 or text[start] == "(":
        return
    window = text[max(0, start - 40) : start]
    last_digit = max(window.rfind(d) for d in "0123456789")
    window = window[last_digit + 1 :].lower()
    if not window.strip():
        return
    for m in _PHONE_LABEL.finditer(window):
        if _PHONE_LABEL_GAP.fullmatch(window, m.end()):
            why = f"{size} digits after a phone label"
            ctx.add(_P_PHONE_CONTEXT, start, end, "phone", "rule:phone", why, weak=_WEAK)
            return


def _cached_phone_outcome(
    ctx: _Context, candidate: str, blocked: tuple[tuple[int, int], ...]
) -> _Outcome | None:
    key = (candidate, ctx.regions, blocked)
    outcome = _PHONE_OUTCOMES.get(key)
    if outcome is None:
        computed = _phone_outcome(ctx, candidate, blocked)
        if computed is None:
            return None
        if len(_PHONE_OUTCOMES) > 32768:
            _PHONE_OUTCOMES.clear()
        outcome = _PHONE_OUTCOMES[key] = computed
    return outcome


def _local_protections(ctx: _Context, start: int, end: int) -> list[tuple[int, int]]:
    """The protected spans (patterns and labelled references) that may overlap ``[start, end)``."""
    text = ctx.text
    lo, hi = max(0, start - _PROTECTION_MAX), min(len(text), end + _PROTECTION_MAX)
    spans = _protect_num_spans(text, lo, hi)
    spans.extend(m.span() for m in _PROTECT_PREFIX.finditer(text, lo, hi))
    spans.extend(span for span in ctx.soft if span[0] < end and start < span[1])
    return spans


#: A national number as customers write one with its trunk prefix: "07700 900123", "07700-900-123",
#: "(020) 7946 0958", "07700900123": at most three digit groups joined by spaces or a dash, the first
#: starting with the prefix 0 (not "00": an international number).
_TRUNK_FORMAT = re.compile(r"\(?0[1-9][0-9]*+\)?(?:[ ]{0,2}-?[ ]{0,2}[0-9]++){0,2}")


def _phone_outcome(ctx: _Context, candidate: str, blocked: tuple[tuple[int, int], ...]) -> _Outcome | None:
    """The phone numbers in a phone-shaped ``candidate``: (start, end, region, international, valid).

    The longest run of digit groups that ``phonenumbers`` validates wins; then the groups after it are
    looked at. National-format windows overlapping a ``blocked`` span (a date, an amount...) are not
    tried. A number no region validates is still one when ``phonenumbers`` calls it possible
    (:func:`_possible_region`): written with ``+`` or ``00``, or in the first region's national format
    with its trunk prefix (:data:`_TRUNK_FORMAT`) where no valid number is. None when the parse budget
    ran out.
    """
    if candidate.startswith("(+") and (close := candidate.find(")")) > 2:
        # "(+65) 9123 4567": the country code in brackets, read as "+65  9123 4567" (same offsets)
        candidate = "+" + candidate[2:close] + "  " + candidate[close + 1 :]
    tokens = [m.span() for m in _PHONE_TOKEN.finditer(candidate)]
    last = len(tokens) - 1
    if candidate[0] == "+":

        def plus(check: Callable[[_Context, str, bool], str | None]) -> Callable[[int, int], str | None]:
            def region_of(_: int, hi: int) -> str | None:
                # "+65 (0) 9123 4567": a trunk prefix in brackets is not dialled from abroad
                number = candidate[:hi].replace("(0)", "   ")
                return check(ctx, number, True) if 8 <= len(_digits(number)) <= 15 else ""

            return region_of

        first: _Outcome = ()
        end = 0
        for check, valid in ((_phone_region, True), (_possible_phone_region, False)):
            # none valid: the longest possible one ("+44 7700 900123")
            longest = _longest_window(tokens, 0, last, plus(check))
            if longest is None:
                return None
            if longest[1]:
                first, end = ((0, tokens[longest[0]][1], longest[1], True, valid),), longest[0] + 1
                break
        # The numbers after it ("+44 7911 123456 / +44 7911 654321": the second was kept as typed).
        rest = _phone_rest(ctx, candidate, tokens, max(end, 1), blocked)
        return None if rest is None else (*first, *rest)

    def national(lo: int, hi: int) -> str | None:
        window = candidate[lo:hi]
        size = len(_digits(window))
        international = window.startswith("00")
        if not (10 <= size <= 17 if international else (8 if _bank_regions else 9) <= size <= 13):
            return ""
        if not international and (_self_protected(window) or any(lo < e and s < hi for s, e in blocked)):
            return ""  # a date, an amount, a timestamp...: never a national number
        if _SLASH_THEN_TRUNK.search(window):
            # "06 12 34 56 78 / 06 22 ...": a trunk prefix after a slash starts the next number of a
            # list (a German area code's slash, "030 / 1234567", is followed by the subscriber's
            # digits); read across it, the first number took the next one's 0 and left its digits
            return ""
        if not international and (
            _YEAR_THEN_NUMBER.match(window)
            or (_NUMBER_THEN_YEAR.fullmatch(window) and _YEAR_THEN_NUMBER.match(candidate, hi - 4))
            or _DECIMAL_AMOUNT.fullmatch(window)
            or _CENTS.match(candidate, hi) is not None
        ):
            # "in 2025 15000 was paid": a year and an amount, not a number without its 0 (nor "45000
            # 2025" in "salary 2024 45000 2025 48000": an amount, then the next year and its amount);
            # "my balance is 1234567.89", "150000000.00 IDR", "1 234 567.89": an amount with its cents
            return ""
        if size < 9:  # eight digits: a number of the bank's own regions only (Singapore's, Hong Kong's)
            return next((r for r in _bank_regions if _parse_valid(window, r)), "")
        return _phone_region(ctx, "+" + window[2:] if international else window, international)

    def possible_00(lo: int, hi: int) -> str | None:
        if not 10 <= len(_digits(candidate[lo:hi])) <= 17:
            return ""
        return _possible_phone_region(ctx, "+" + candidate[lo + 2 : hi], True)

    found: list[tuple[int, int, str, bool, bool]] = []
    i = 0
    while i < len(tokens):
        longest = _longest_window(tokens, i, last, national)
        if longest is None:
            return None
        valid = bool(longest[1])
        if not valid and candidate.startswith("00", tokens[i][0]):
            # None valid from an international prefix: the whole number when it is a possible one,
            # not a national number read in its last groups ("0044 7700 900 123")
            longest = _longest_window(tokens, i, last, possible_00)
            if longest is None:
                return None
        j, region = longest
        if region:
            lo, hi = tokens[i][0], tokens[j][1]
            found.append((lo, hi, region, not valid or candidate.startswith("00", lo), valid))
            i = j
        i += 1
    if ctx.regions and _trunk_possible(ctx, candidate, tokens, blocked, found) is None:
        return None
    return tuple(found)


def _phone_rest(
    ctx: _Context,
    candidate: str,
    tokens: list[tuple[int, int]],
    i: int,
    blocked: tuple[tuple[int, int], ...],
) -> _Outcome | None:
    """The numbers of ``candidate`` from its ``i``-th digit group on (with the ``+`` before that
    group, if any), at their offsets in ``candidate``: what follows an international number that
    :func:`_phone_outcome` found first. None when the parse budget ran out."""
    if i >= len(tokens):
        return ()
    lo = tokens[i][0]
    if candidate[lo - 1 : lo] == "+":
        lo -= 1
    elif candidate[lo - 2 : lo] == "(+":
        lo -= 2
    shifted = tuple((max(b - lo, 0), e - lo) for b, e in blocked if e > lo)
    rest = _phone_outcome(ctx, candidate[lo:], shifted)
    if rest is None:
        return None
    return tuple(
        (a + lo, b + lo, region, international, valid) for a, b, region, international, valid in rest
    )


def _longest_window(
    tokens: list[tuple[int, int]], i: int, last: int, region_of: Callable[[int, int], str | None]
) -> tuple[int, str] | None:
    """The longest run of the groups ``tokens[i..j]`` (``j`` from ``last`` down to ``i``) that
    ``region_of(start, end)`` names a region for: ``(j, region)``, ``(-1, "")`` if none; None once the
    parse budget is spent (``region_of`` said None)."""
    for j in range(last, i - 1, -1):
        region = region_of(tokens[i][0], tokens[j][1])
        if region is None:
            return None
        if region:
            return j, region
    return -1, ""


def _trunk_possible(
    ctx: _Context,
    candidate: str,
    tokens: list[tuple[int, int]],
    blocked: tuple[tuple[int, int], ...],
    found: list[tuple[int, int, str, bool, bool]],
) -> bool | None:
    """Adds to ``found`` (sorted again) the numbers in the groups it leaves that are possible in the
    first region, written with its trunk prefix in a common format (:data:`_TRUNK_FORMAT`): a bank's
    logs keep no number its region could assign ("07700 900123" in GB: Ofcom's drama range, not
    valid). None when the parse budget ran out."""
    held = [(lo, hi) for lo, hi, *_ in found]

    def trunk(lo: int, hi: int) -> str | None:
        window = candidate[lo:hi]
        if not 9 <= len(_digits(window)) <= 13 or _TRUNK_FORMAT.fullmatch(window) is None:
            return ""
        if any(lo < e and s < hi for s, e in (*held, *blocked)) or _self_protected(window):
            return ""
        return _possible_phone_region(ctx, window, False)

    i = 0
    added = False
    while i < len(tokens):
        longest = _longest_window(tokens, i, min(len(tokens) - 1, i + 2), trunk)
        if longest is None:
            return None
        j, region = longest
        if region:
            found.append((tokens[i][0], tokens[j][1], region, False, False))
            added = True
            i = j
        i += 1
    if added:
        found.sort()
    return True


#: A slash, then a group starting with 0 (a trunk prefix): the next number of a list.
_SLASH_THEN_TRUNK = re.compile(r"/[ ]*0")
#: A window that starts with a year and another group of digits ("2025 15000"): read in national
#: format, a German or Italian number without its trunk prefix, which nobody writes so (a trial's
#: finding: "in 2024 I paid 12000 and in 2025 15000" lost its amount to [PHONE]).
_YEAR_THEN_NUMBER = re.compile(r"(?:19|20)[0-9]{2}[ ][0-9]{3,}")
#: An amount, then a year ("45000 2025"): read with what follows it as :data:`_YEAR_THEN_NUMBER`.
_NUMBER_THEN_YEAR = re.compile(r"[1-9][0-9]{2,}[ ](?:19|20)[0-9]{2}")  # not "07700 2019": a trunk 0
#: Digits, a point and two more: an amount and its cents ("1234567.89", or in thousands "1 234
#: 567.89"), never a phone number's last group (numbers grouped with points pair all their digits:
#: "06.12.34.56.78").
_DECIMAL_AMOUNT = re.compile(r"[0-9]{3,}[.][0-9]{2}|[0-9]{1,3}(?:[ '’][0-9]{3})+[.,][0-9]{2}")
#: Cents right after a window of digit groups ("150000000.00", "1 234 567.89", "1.234.567,89"): the
#: window is an amount's whole part.
_CENTS = re.compile(r"[.,][0-9]{2}(?![0-9])")


@lru_cache(maxsize=4096)
def _self_protected(window: str) -> bool:
    return _PROTECT_NUM.search(window) is not None


# --------------------------------------------------------------------------------------------------
# Protected spans: dates, times, timestamps, amounts, percentages, IPs, versions
# --------------------------------------------------------------------------------------------------

_CURRENCY_SYMBOL = "[$£€¥₹₽₩₺₪₫฿₴₦₱¢]"
_CURRENCY_CODES = (  # noqa: SIM905 - a word list reads better as words
    "EUR USD GBP CHF JPY CNY RMB INR RUB AUD CAD BRL SEK NOK DKK PLN CZK HUF MXN HKD SGD NZD ZAR TRY AED SAR "
    "KRW EGP IDR THB VND MYR PHP NGN KES PKR BDT LKR ILS UAH ARS CLP COP PEN TWD QAR KWD BHD OMR MAD GHS "
    "RON BGN ISK"
).split()
_CURRENCY_BEFORE = (
    rf"(?:{_CURRENCY_SYMBOL}|(?:{'|'.join(_CURRENCY_CODES)})(?<![A-Za-z][A-Z]{{3}})"
    r"|(?:Rs\.?|R\$|US\$|A\$|C\$|HK\$|S\$|Fr\.|kr\.?|zł|руб\.?))"
)
_CURRENCY_AFTER = (
    # the names whatever their case ("25000000 Euros", "Won"), the codes in capitals
    rf"(?:{_CURRENCY_SYMBOL}|(?:{'|'.join(_CURRENCY_CODES)}|(?i:euros?|dollars?|pounds?|quid|bucks|pesos?|rupees?"
    r"|rubles?|roubles?|francs?|yuan|yen|zł(?:otych)?|kr(?:onor|oner)?|lira|TL|reais|real|dirhams?"
    # (a PII probe's: "transfer 25000000 won to Korea" lost its amount to [ACCOUNT]; but "won" and
    # "rand" are English words after a phone number too, "07700 900123 won't get the sms", so
    # only the names no sentence goes on with)
    r"|riyals?|baht|ringgit|rupiah|forint|zlot(?:y|ys|ych)|shekels?|naira"
    # ... except after a number ending in four zeros, "25000000 won" (session 63's note), and not
    # before a word that makes them a verb or a bank's name: "07700 900000 rand me", "0821230000
    # won a prize", "62012340000 rand account" (a reviewer's probe)
    r"|(?:(?<=0000)|(?<=0000[ ]))(?:won|rand)"
    r"(?![ ](?:me|us|you|him|her|them|a|an|the|my|your|account|acc|acct)(?![A-Za-z]))))(?![A-Za-z'’])"
    r"|руб(?:лей|ля|ль)?\.?|р\.|元|円|块|萬|万|원)"
)
#: Words of money or quantities before three round groups of three digits that make them amounts
#: (:func:`_amounts_in_pairs`: "payments of 250 500 750", "I paid 600 700 800", "pagué 300 450 600",
#: "three debits 120 340 560", "Przelewy 150 250 350"), in English, Spanish, Portuguese, French,
#: German, Italian and Polish, or a currency sign, looked for in the number's own sentence.
_AMOUNT_CUE = regex.compile(
    r"(?<![\p{L}])(?:paid|pay(?:s|ing|ments?)?|fees?|charge[sd]?|costs?|spent|spend(?:ing)?|prices?"
    r"|amounts?|totals?|sums?|bills?|invoices?|refunds?|withdr(?:ew|awn|aw|awals?)|deposit(?:s|ed)?"
    r"|transfer(?:s|red)?|transactions?|debits?|credits?|instal(?:l)?ments?|split|goals?|savings?"
    r"|limits?|balances?|salar(?:y|ies)|wages?|budgets?|rent|scores?|points|items?"
    r"|pag(?:o|os|u[ée]|ar|amentos?|ato|amenti)|importes?|importi|montants?|paiements?|pay[ée]s?"
    r"|valor(?:es)?|cargos?|retiros?|transferencias?|cuotas?|prestaciones|parcelas?"
    r"|virements?|prélèvements?|retraits?|sommes?"
    r"|zahlungen?|bezahlt|gebühren|beträge|abbuchungen?|überweisungen?|überwiesen|raten"
    r"|bonific[io]|prelievi|prelievo|rate|somme"
    r"|płatno[śs]ci|zapłaci(?:łem|łam|ł)|kwoty|przelew(?:y|ów|em)?|wypłat(?:y|a)?|raty)(?![\p{L}])"
    r"|" + _CURRENCY_SYMBOL,
    regex.IGNORECASE,
)
#: A currency right after a number (:data:`_CURRENCY_AFTER`): "150 250 350 Euro", "600 700 800 zł".
_CURRENCY_FOLLOWS = regex.compile(r"[ ]?" + _CURRENCY_AFTER, regex.IGNORECASE)
# After the first digit (already matched): the rest of a number as amounts write it.
_AMOUNT_REST = (
    r"(?:[0-9]{0,2}+(?:[,.'’ ][0-9]{3}){1,6}+(?:[.,][0-9]{1,2})?+|[0-9]{0,14}+(?:[.,][0-9]{1,2})?+)"
)
#: The longest text a protection pattern matches (a build stamp with its suffix).
_PROTECTION_MAX = 64
_DAY_REST = r"(?:(?<=0)[1-9]|(?<=[12])[0-9]?|(?<=3)[01]?|(?<=[4-9]))"
_MONTH_REST = r"(?:(?<=0)[1-9]|(?<=1)[0-2]?|(?<=[2-9]))"
_HOUR_REST = r"(?:(?<=[01])[0-9]?|(?<=2)[0-3]?|(?<=[3-9]))"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_DAY = r"(?:0?[1-9]|[12][0-9]|3[01])"
#: Protections that start with a digit: every alternative goes on from the first digit of a run.
_PROTECT_NUM = re.compile(
    r"(?<![0-9])[0-9](?:"
    # ISO dates and timestamps: 2024-03-15, 2024-03-15T14:30:00Z, 2024/03/15 14:30
    rf"(?:(?<=1)[89]|(?<=2)0)[0-9]{{2}}(?P<s1>[-/.]){_MONTH}(?P=s1){_DAY}"
    r"(?:(?:T|[ ]{1,2})(?:[01]?[0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]{1,9})?)?"
    r"(?:Z|[ ]?[+-][0-9]{2}:?[0-9]{2})?)?(?![0-9])"
    # build stamps and model versions: 20261130-054108-c2db79
    r"|(?<![A-Za-z][0-9])[0-9]{7}[-_T][0-9]{4,6}(?:[-_.][0-9A-Za-z]{1,40})?"
    # day-month-year and month-day-year with a 4-digit year; 2-digit years as D-M-Y, or M/D/Y
    rf"|{_DAY_REST}(?P<s2>[-/.]){_MONTH}(?P=s2)(?:1[89]|20)[0-9]{{2}}(?![0-9])"
    rf"|{_MONTH_REST}(?P<s3>[-/.]){_DAY}(?P=s3)(?:1[89]|20)[0-9]{{2}}(?![0-9])"
    rf"|{_DAY_REST}(?P<s4>[-/.]){_MONTH}(?P=s4)[0-9]{{2}}(?![0-9]|[-/.][0-9])"
    rf"|{_MONTH_REST}/{_DAY}/[0-9]{{2}}(?![0-9]|[-/.][0-9])"
    # compact timestamps: 20240315143022 (a valid date and time)
    r"|(?:(?<=1)9|(?<=2)0)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])(?:[01][0-9]|2[0-3])[0-5][0-9]"
    r"[0-5][0-9](?![0-9])"
    # compact dates: 20240315, 15032024
    r"|(?:(?<=1)9|(?<=2)0)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])(?![0-9])"
    r"|(?:(?<=0)[1-9]|(?<=[12])[0-9]|(?<=3)[01])(?:0[1-9]|1[0-2])(?:19|20)[0-9]{2}(?![0-9])"
    # card expiry: 12/26, 12/2026
    r"|(?<![/][0-9])(?:(?<=0)[1-9]|(?<=1)[0-2])/(?:20)?[0-9]{2}(?![0-9/])"
    # times: 14:30, 9:15 am, 14:30:00.250, 14h30
    rf"|{_HOUR_REST}(?::[0-5][0-9]){{1,2}}(?:[.,][0-9]{{1,6}})?(?:[ ]?[AaPp]\.?[Mm]\.?)?(?![0-9])"
    rf"|{_HOUR_REST}h[0-5][0-9](?![0-9])"
    # versions: after a product name and "/" (Chrome/122.0.6261.112, Safari/537.36), with three dots or
    # more (but for 06.12.34.56.78, a phone number in pairs), calendar versions (2024.03.1187)
    r"|(?<=[A-Za-z]/[0-9])[0-9]{0,7}(?:\.[0-9A-Za-z]{1,10}){1,4}"
    r"|(?<![.][0-9])(?!(?<=[0-9])[0-9](?:\.[0-9]{2}){3,6}(?![0-9]|\.[0-9]))[0-9]{0,7}(?:\.[0-9]{1,6}){3,6}"
    r"(?![0-9]|\.[0-9])"
    r"|(?<![.][0-9])(?:(?<=1)9|(?<=2)0)[0-9]{2}\.[0-9]{1,2}\.[0-9]{1,6}(?![0-9]|\.[0-9])"
    # IPv4 addresses and x.y.z versions
    r"|(?<![.][0-9])[0-9]{0,2}+(?:\.[0-9]{1,3}){3}(?![0-9]|\.[0-9])"
    r"|(?<![.][0-9])[0-9]?+\.[0-9]{1,4}+\.[0-9]{1,6}+(?![0-9]|\.[0-9])"
    # unix timestamps in seconds and milliseconds (2001-2033)
    r"|(?<=1)[0-9]{9}(?:[0-9]{3})?(?![0-9])"
    # amounts with the currency after: 1 250 000 EUR, 1.250.000,00 €, 50 euros
    rf"|(?<![.,'’][0-9]){_AMOUNT_REST}[ ]?{_CURRENCY_AFTER}"
    # numbers in a locale grouping: 1,250,000  1.250.000,00  1'250
    r"|(?<![.,'’][0-9])[0-9]{0,2}+(?P<g>[,.'’])[0-9]{3}(?:(?P=g)[0-9]{3}){0,5}+(?:[.,][0-9]{1,2})?(?![0-9]|[.,'’][0-9])"
    # percentages
    r"|(?<![.,][0-9])[0-9]{0,2}+(?:[.,][0-9]{1,4}+)?[ ]?%"
    r")"
)
#: Where :data:`_PROTECT_NUM` may match: the start of a run of digits whose length and the characters
#: after it fit one of its alternatives (a necessary condition only, much cheaper to reject). Only the
#: run itself is consumed, so no run start is skipped.
_PROTECT_NUM_START = re.compile(
    r"(?<=[A-Za-z]/)[0-9]"  # versions after a product name
    r"|(?<![0-9])[0-9]{1,15}+(?="
    r"(?P<s>[-/.])(?<![0-9]{3}[-/.])(?:0?[1-9]|[12][0-9]|3[01])(?P=s)[0-9]{2}"  # day/month first dates
    r"|/(?<![0-9]{3}/)[0-9]{2}"  # card expiry
    r"|[-/.](?<=[0-9]{4}[-/.])[0-9]{1,2}[-/.][0-9]"  # ISO dates, calendar versions
    r"|[-_T](?<=[0-9]{8}[-_T])[0-9]{4}"  # build stamps
    r"|[:h](?<![0-9]{3}[:h])[0-5][0-9]"  # times
    r"|\.(?<![0-9]{9}\.)[0-9]{1,6}\.[0-9]"  # versions, IPv4
    r"|[,.'’](?<![0-9]{4}[,.'’])[0-9]{3}"  # locale groupings
    rf"|[ ](?<![0-9]{{4}}[ ])(?:[0-9]{{3}}[,.'’ ]){{0,5}}[0-9]{{3}}(?:[.,][0-9]{{1,2}})?[ ]?{_CURRENCY_AFTER}"
    rf"|(?:[.,][0-9]{{1,4}})?[ ]?(?:%|{_CURRENCY_AFTER})"  # amounts, percentages (run <= 15)
    r"|(?<=[0-9]{8})(?![0-9])"  # compact dates and timestamps, unix timestamps
    r")"
)


def _protect_num_spans(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """``[m.span() for m in _PROTECT_NUM.finditer(text, lo, hi)]``, trying only where it may match."""
    spans: list[tuple[int, int]] = []
    last = lo
    match = _PROTECT_NUM.match
    for candidate in _PROTECT_NUM_START.finditer(text, lo, hi):
        pos = candidate.start()
        if pos < last:
            continue
        m = match(text, pos, hi)
        if m is not None:
            last = m.end()
            spans.append((pos, last))
    return spans


#: Protections that start with a currency or a version prefix: £1,250.00, CHF 1'250.00, v2.13.0.
_PROTECT_PREFIX = re.compile(
    r"(?=[$£€¥₹₽₩₺₪₫฿₴₦₱¢A-Zkzрv])"
    rf"(?:{_CURRENCY_BEFORE}[ ]?[-−]?[0-9]{_AMOUNT_REST}"
    r"|[vV](?<![0-9A-Za-z.][vV])(?:ersion[ ]?|er\.?[ ]?)?[0-9]{1,4}(?:\.[0-9A-Za-z]{1,8}){0,4}"
    r"(?:[-+][0-9A-Za-z.]{1,40})?"
    # build ids: UP1A.231005.007
    r"|[A-Z](?<![0-9A-Za-z.][A-Z])[A-Z0-9]{1,10}(?:\.[0-9A-Za-z]{1,10}){2,4}(?![0-9A-Za-z])"
    # a reference's capitals, a dash and its digits: "#AL-00291774" (after "#": 4-9 digits),
    # "CASE-ZA-771420", "CMP-88213" (4-7 digits); never after a phone's or an account's own prefix
    # ("MOB-91234567", "AC-12345678"), nor a phone's first group ("TEL-07700 900123")
    r"|(?!(?:TEL|TLF|MOB|HP|PH|PHONE|CELL|WA|FAX|AC|ACC|ACCT|ACNO|AN)-)"
    r"(?:[A-Z](?<=\#[A-Z])[A-Z]{1,5}(?:-[A-Z]{2,5}){0,2}-[0-9]{4,9}"
    r"|[A-Z](?<![0-9A-Za-z.\-][A-Z])[A-Z]{1,5}(?:-[A-Z]{2,5}){0,2}-[0-9]{4,7})(?![0-9A-Za-z]|[ \-./][0-9]))"
)
