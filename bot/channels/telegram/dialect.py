"""How Telegram talks: which messages are for Teller, what they say, and where the answer goes.

Pure functions over python-telegram-bot's objects; no network.

- **Addresses.** A conversation is a chat (``"<chat_id>"``) or, in a forum, one topic of it
  (``"<chat_id>:<message_thread_id>"``). Topics are separate discussions (often one per customer
  in a support forum), so each is its own conversation: its own history, its own handoff, and the
  replies and an operator's relays land in that topic. The forum's General topic has no thread id
  and is the chat itself. Replies in an ordinary group's reply chain are *not* topics
  (``is_topic_message`` is false there) and stay in the chat's conversation. The alternative, one
  conversation per chat with the topic only in the address, would let a handoff opened in one
  topic swallow the messages of every other topic, and a handoff records one address to relay
  to. In a group without topics the members share one conversation, as they share the chat.
- **Replies in groups.** Teller's answer to a member's message in a group is sent as a reply to
  that message (its delivery address is ``"<conversation>/<message_id>"``), so the members who
  share the chat see whose question it answers; Telegram still sends it if the message was
  deleted meanwhile. In a private chat, and for an operator's relay, it is the conversation itself.
- **Groups.** In groups and supergroups Teller answers only what is addressed to it: a message
  that mentions it (``@username`` or a text mention of the bot's user), a reply to one of its
  messages, or a command for it (handled by the command handlers, which already ignore
  ``/cmd@other_bot``). Private chats are always addressed.
- **Words.** A caption counts as text; the bot's own mentions are cut out (entity offsets are in
  UTF-16 code units) before the words reach the classifier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from telegram import Chat, Message, MessageEntity, User

#: Chat types where Teller waits to be addressed.
GROUP_TYPES = frozenset({Chat.GROUP, Chat.SUPERGROUP})
_MENTIONS: list[str | None] = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]


def address(chat_id: int, thread_id: int | None = None) -> str:
    """The conversation id (and delivery address) of a chat, or of one forum topic of it."""
    return f"{chat_id}:{thread_id}" if thread_id is not None else str(chat_id)


def parse_address(value: str) -> tuple[int, int | None]:
    """``(chat_id, message_thread_id)`` of an address (a reply's ``/<message_id>`` is left out).
    Raises ValueError for anything else."""
    chat_id, thread_id, _ = parse_reply_address(value)
    return chat_id, thread_id


def parse_reply_address(value: str) -> tuple[int, int | None, int | None]:
    """``(chat_id, message_thread_id, message_id replied to)`` of a delivery address
    (``"<chat_id>[:<thread_id>][/<message_id>]"``). Raises ValueError for anything else."""
    where, slash, replied = value.partition("/")
    chat, _, thread = where.partition(":")
    if slash and not replied:
        raise ValueError(f"{value!r} names no message to reply to")
    return int(chat), (int(thread) if thread else None), (int(replied) if replied else None)


def reply_address(message: Message) -> str:
    """Where Teller's answer to ``message`` goes: in a group, a reply to it in its conversation;
    elsewhere the conversation itself (:func:`address_of`)."""
    where = address_of(message)
    return f"{where}/{message.message_id}" if is_group(message.chat) else where


def address_of(message: Message) -> str:
    """Where the answer to ``message`` goes: its chat, and its forum topic if it is in one."""
    return address(message.chat.id, message.message_thread_id if message.is_topic_message else None)


def is_group(chat: Chat) -> bool:
    return chat.type in GROUP_TYPES


def _entities(message: Message) -> tuple[str | None, Mapping[MessageEntity, str]]:
    """The message's words (its text, else its caption) and its mention entities."""
    if message.text is not None:
        return message.text, message.parse_entities(_MENTIONS)
    if message.caption is not None:
        return message.caption, message.parse_caption_entities(_MENTIONS)
    return None, {}


def _is_bot(entity: MessageEntity, covered: str, bot: User) -> bool:
    if entity.type == MessageEntity.TEXT_MENTION:
        return entity.user is not None and entity.user.id == bot.id
    return bool(bot.username) and covered.lower() == f"@{bot.username}".lower()


def mentions(message: Message, bot: User) -> bool:
    """Whether the text or caption mentions ``bot``."""
    _, found = _entities(message)
    return any(_is_bot(entity, covered, bot) for entity, covered in found.items())


def replies_to(message: Message, bot: User) -> bool:
    """Whether ``message`` answers one of ``bot``'s messages. In a forum every message of a topic
    "replies" to the topic's creation; that is not a reply to the bot."""
    replied = message.reply_to_message
    return (
        replied is not None
        and replied.forum_topic_created is None
        and replied.from_user is not None
        and replied.from_user.id == bot.id
    )


def addressed(message: Message, bot: User) -> bool:
    """Whether Teller should answer ``message`` (commands are decided by their handlers; a channel's
    post Telegram copies into its discussion group never reaches them, ``TelegramChannel``'s filter)."""
    return not is_group(message.chat) or mentions(message, bot) or replies_to(message, bot)


def sender(message: Message) -> User | Chat:
    """Who speaks in ``message``: the chat it was sent on behalf of where there is one
    (``sender_chat``: a group's anonymous administrators, a member writing as their channel), else
    its user, else its chat. Telegram puts a shared placeholder user in ``from`` for those (1087968824
    ``GroupAnonymousBot`` for every group's anonymous administrators), which made them all one
    customer across groups, sharing one set of abuse limits (a trial's finding)."""
    return message.sender_chat or message.from_user or message.chat


def words(message: Message, bot: User) -> str | None:
    """The text (or caption) with ``bot``'s mentions cut out; None when the message has no words."""
    text, found = _entities(message)
    if text is None:
        return None
    spans = [(e.offset, e.length) for e, covered in found.items() if _is_bot(e, covered, bot)]
    return cut(text, spans)


#: What a message without words carries, as the operators read it ("sent a photo"), by the
#: attribute of python-telegram-bot's ``Message`` that holds it; first match wins.
_ATTACHMENTS = (
    ("photo", "a photo"),
    ("document", "a file"),
    ("video", "a video"),
    ("video_note", "a video"),
    ("animation", "an animation"),
    ("voice", "a voice message"),
    ("audio", "an audio file"),
    ("sticker", "a sticker"),
    ("location", "a location"),
    ("venue", "a location"),
    ("contact", "a contact card"),
    ("poll", "a poll"),
)


def attached(message: Message) -> str | None:
    """What a message carries besides its words ("a photo" with a caption), None for text alone."""
    return next((said for name, said in _ATTACHMENTS if getattr(message, name, None)), None)


def attachment_kind(message: Message) -> str:
    """What a message without words holds, for the operators ("a photo", "a contact card"); its
    content is never read (a contact's phone number, a photo's subject)."""
    return next(
        (said for name, said in _ATTACHMENTS if getattr(message, name, None)), "something without words"
    )


def cut(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """``text`` without the ``(offset, length)`` spans, counted in UTF-16 code units as Telegram
    counts entities. The pieces left are joined by a single space, and the punctuation that only
    went with a leading mention ("@teller_bot, my card ...") is dropped."""
    units = text.encode("utf-16-le")
    pieces: list[str] = []
    start = 0
    for offset, length in sorted(spans):
        pieces.append(units[start * 2 : offset * 2].decode("utf-16-le", errors="replace"))
        start = max(start, offset + length)
    pieces.append(units[start * 2 :].decode("utf-16-le", errors="replace"))
    if len(pieces) == 1:
        return text.strip()
    joined = ""
    for piece in (p.strip() for p in pieces):
        if not piece:
            continue
        if not joined:
            joined = piece.lstrip(",:;").lstrip()
        elif piece[0] in ",:;.!?":
            joined += piece
        else:
            joined += " " + piece
    return joined


def command_target(message: Message) -> tuple[str, str | None] | None:
    """``(command, bot username or None)`` of a message that starts with a bot command."""
    text = message.text or ""
    first = next(iter(message.entities), None)
    if first is None or first.type != MessageEntity.BOT_COMMAND or first.offset != 0:
        return None
    command, _, target = text[1 : first.length].partition("@")
    return command.lower(), (target or None)
