"""Abstracts are untrusted text: spot sentences that talk to an AI, and make any output inert.

`addresses_assistant` decides whether a sentence is an instruction aimed at a model (or at "the
reviewer/summarizer") rather than a statement about the world, or text dressed as an answer or as
the sources' frame; the engine withholds such sentences from the LLM and never quotes them. Cue
words and rules are here (their fast path in rag/cuegate.py), decoded readings and other languages
in rag/disguise.py, and a learned second opinion in rag/scorer.py. `sanitize` and `terminal_safe`
make text safe to render as Markdown/HTML or to print. `repeats_withheld` tells whether an answer
passes a withheld sentence on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import replace
from functools import cache, lru_cache
from pathlib import Path

from rag import cuegate, disguise, scorer
from rag.cuegate import Compiled
from rag.disguise import foreign, readings
from rag.scorer import probability
from rag.text import sentence_spans
from rag.types import Hit, Spans, encode_spans

# ------------------------------------------------------------------ normalisation

_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\u180e\ufeff]")
_TAG_CHARS = re.compile("[\U000e0000-\U000e007f]")  # invisible "tag" letters that smuggle ASCII
# Cyrillic and Greek letters that look Latin, used to dodge word matching ("ignоre" with a Cyrillic о).
_CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁɡАВЕКМНОРСТХІЈЅοανρτκιΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "aeopcyxijsdgABEKMHOPCTXIJSoavptkiABEZHIKMNOPTYX"
)
_MIXED_WORD = re.compile(r"\w*[A-Za-z]\w*")
_SPACED_LETTERS = re.compile(r"(?<!\w)(?:[A-Za-z][ ._\-]){3,}[A-Za-z](?!\w)")
# Letters spaced one apart run several words together ("I g n o r e p r e v i o u s"): the words the
# cues look for are split out again.
_CUE_WORDS = re.compile(
    r"(ignore|disregard|forget|override|bypass|previous|prior|above|earlier|instructions?|prompts?|rules|system"
    r"|assistant|you|must|reply|respond|answer|output|print|say|now|the|all|and|your)",
    re.I,
)


def _latinise(word: re.Match) -> str:
    text = word.group(0)
    return text.translate(_CONFUSABLES) if not text.isascii() else text


def _normalise(sentence: str) -> str:
    """One spelling for the tricks that hide words from a pattern: width, invisibles, look-alikes, s p a c i n g."""
    if sentence.isascii():  # the usual case: none of the Unicode tricks can be in it
        return _SPACED_LETTERS.sub(_unspace, sentence)
    text = unicodedata.normalize("NFKC", sentence)
    text = _TAG_CHARS.sub(lambda m: chr(ord(m.group(0)) - 0xE0000), text)
    text = _ZERO_WIDTH.sub("", text)
    text = _MIXED_WORD.sub(_latinise, text)
    return _SPACED_LETTERS.sub(_unspace, text)


def _unspace(run: re.Match) -> str:
    letters = re.sub(r"[ ._\-]", "", run.group(0))
    return " ".join(_CUE_WORDS.sub(r" \1 ", letters).split()) if len(letters) >= 8 else letters


# ------------------------------------------------------------------ cues

# Start of an imperative: the verb opens a clause or follows markup (no subject before it), or follows "please",
# "you must", "I want you to". "LLMs ignore previous instructions" is a statement, not an order.
_IMP = (
    r"(?:^|(?<=[.!?;:,(\"'“”—\n>\]|*#_])|\b(?:please|kindly|now|then|just|simply|instead|always|immediately)\b"
    r"|\byou\s+(?:must|should|shall|will|need\s+to|have\s+to|are\s+to|are\s+(?:now\s+)?(?:required|instructed|asked|expected)\s+to|can|may)(?:\s+(?:now|also|instead|always|never))?\b"
    r"|\b(?:i|we)\s+(?:want|need|ask|instruct|command|order|require)\s+you\s+to\b|\b(?:remember|make\s+sure|be\s+sure|do\s+not\s+forget|don'?t\s+forget)\s+to\b)\s*"
    + r"(?:\b|(?<=_))"
)  # ends where a word starts (after an underscore too): always so, and said so for `_gate`
_AI = (
    r"(?:AIs?|A\.I\.|LLMs?|(?:large\s+)?language\s+models?|(?:AI\s+|virtual\s+|chat\s+)?assistants?|chat\s?bots?"
    r"|ChatGPT|GPT[-\w.]*|Claude|Gemini|Copilot|bots?|AI\s+(?:systems?|models?|agents?|reviewers?|readers?|summari[sz]ers?|tools?)"
    r"|automated\s+(?:reviewers?|readers?|summari[sz]ers?|systems?|tools?|agents?))"
)
_READER = (
    r"(?:reviewers?|readers?|summari[sz]ers?|referees?|evaluators?|graders?|screeners?|meta-reviewers?|area\s+chairs?)"
)
_OUTPUT = r"(?:answers?|responses?|outputs?|repl(?:y|ies)|summar(?:y|ies)|reviews?|assessments?|evaluations?|reports?|completions?)"
_RULES = (
    r"(?:instructions?|prompts?|rules|directions?|directives?|guidelines|guidance|context|messages?|constraints|commands?"
    r"|programming|polic(?:y|ies)|orders|requests?|restrictions|safeguards|guardrails|training|everything|question|query)"
)
_TEXTS = r"(?:answers?|responses?|repl(?:y|ies)|summar(?:y|ies)|reviews?|descriptions?|outputs?|completions?|messages?|texts?|text\s+generated)"
_OBLIGED = r"(?:must|should|shall|has\s+to|have\s+to|needs?\s+to|is\s+to|are\s+to|ought\s+to|(?:is|are)\s+(?:required|expected|obliged|supposed)\s+to)"
_SAY = (
    r"(?:print|write|writ\w+|repl\w+|respond\w*|output\w*|say\w*|state|answer\w*|includ\w+|mention\w*|contain\w*|begin\w*|start\w*|open\w*|end\w*"
    r"|conclud\w+|describ\w+|cit\w+|quot\w+|give|report|point\w*|tell\w*|rely|prefix\w*|terminat\w+|reproduc\w+|add\w*|append\w*|insert\w*|deliver\w*)\b"
)
_OVERRIDE = (
    r"(?:ignore|disregard|forget|override|overrule|bypass|discard|abandon|neglect|set\s+aside|do\s+not\s+(?:follow|obey)"
    r"|don'?t\s+(?:follow|obey)|stop\s+following)\b[^.!?]{0,40}?\b" + _RULES + r"\b"
)


def _cue(pattern: str, flags: int = re.I) -> re.Pattern:
    return re.compile(pattern, flags)


# (weight, pattern): a sentence is flagged when the weights of the cues it matches reach FLAG_AT.
# Weight 2 cues are unambiguous on their own; weight 1 cues only count together with another.
FLAG_AT = 2
LEARNED_AT = 0.5  # the learned scorer's probability from which a sentence is withheld whatever the cues say


def _patterns() -> list[tuple[int, re.Pattern]]:
    """The cues, compiled (on first use: see `_compiled`)."""
    return [
        # chat templates and role tokens
        (
            2,
            _cue(
                r"<\|\s*(?:im_start|im_end|im_sep|system|user|assistant|endoftext|begin_of_text|start_header_id|end_header_id|eot_id)\s*\|>"
                r"|\[/?INST\]|<<\s*/?SYS\s*>>|<\s*/?\s*(?:start_of_turn|end_of_turn)\s*>|###\s*(?:instruction|system|response|human|assistant)s?\s*:"
                r"|\[\s*(?:system|assistant|admin|developer)(?:\s+(?:message|prompt|note|override))?\s*\]"
            ),
        ),
        (
            2,
            _cue(
                r"^\W{0,3}(?:system|assistant|developer|admin|sysadmin)(?:\s+(?:prompt|message|note|override|instruction))?\s*:\s*\S"
            ),
        ),
        # overriding earlier instructions: an order (2), or a mere mention (1)
        (2, _cue(_IMP + _OVERRIDE)),
        (1, _cue(r"\b" + _OVERRIDE)),
        # the same in other languages
        (
            2,
            _cue(
                r"\b(?:ignorier(?:e|en\s+Sie)|vergiss|vergessen\s+Sie|missachte)\b[^.!?]{0,40}\b(?:Anweisungen|Instruktionen|Befehle|Regeln|Vorgaben)"
                r"|\b(?:ignore[zr]?|oublie[zr]?)\b[^.!?]{0,40}\b(?:instructions|consignes|r[èe]gles|directives)\s+(?:pr[ée]c[ée]dentes|ant[ée]rieures|ci-dessus)"
                r"|\b(?:ignora|ignore|ignorate|olvida|olvide|esque[çc]a|dimentica)\b[^.!?]{0,40}\b(?:instrucciones|instru[çc][õo]es|istruzioni|indicaciones|reglas|regras|regole)"
                r"|(?:игнорируй|игнорируйте|проигнорируй|забудь|забудьте)[^.!?]{0,40}(?:инструкци|указани|правил)"
                r"|(?:忽略|无视|忽視|無視|忘记|忘記)[^。！？]{0,20}(?:指令|指示|说明|說明|提示|规则|規則)|(?:指示|命令)[^。]{0,10}無視|(?:지시|명령)[^.]{0,10}무시"
            ),
        ),
        (
            2,
            _cue(
                r"\b(?:du\s+bist\s+jetzt|tu\s+es\s+maintenant|vous\s+[êe]tes\s+maintenant|ahora\s+eres|agora\s+voc[êe]\s+[ée]|ora\s+sei|ты\s+теперь)\b"
                r"|你现在是|你現在是|あなたは今"
                r"|\b(?:antworte|antworten\s+Sie)\s+nur|\br[ée]pond(?:s|ez)\s+(?:uniquement|seulement)|\bresponde\s+solo|\bresponda\s+apenas|\brispondi\s+solo"
                r"|отвечай\s+только|只回答|只回复|仅回答"
                r"|\b(?:wenn\s+du\s+eine\s+KI\s+bist|si\s+(?:vous\s+[êe]tes|tu\s+es)\s+une?\s+(?:IA|intelligence\s+artificielle|assistant)|si\s+eres\s+una?\s+(?:IA|asistente))"
                r"|\bесли\s+ты\s+(?:ИИ|нейросеть|языковая\s+модель)|如果你是"
            ),
        ),
        # role play
        (
            2,
            _cue(
                r"\byou\s+are\s+now\b|\bfrom\s+now\s+on,?\s+you\b|\byou(?:'re|\s+are)\s+(?:no\s+longer|not)\s+(?:an?|the)\s+(?:AI|assistant|language\s+model|chat\s?bot)"
                r"|\byour\s+(?:new|real|true|actual)\s+(?:role|task|job|goal|objective|persona|instructions?|purpose)\b|\b(?:DAN|developer|god|jailbreak|unrestricted)\s+mode\b"
                r"|"
                + _IMP
                + r"(?:act|behave|speak|write|respond|answer)\s+as\s+(?:if\s+you|though\s+you|an?\b|the\b|my\b)"
                r"|" + _IMP + r"(?:pretend|imagine)\s+(?:to\s+be|you\s+are|that\s+you)|\brole-?play\s+as\b"
            ),
        ),
        # speaking to a model, or to the reviewer/summarizer
        (
            2,
            _cue(
                r"\b(?:dear|hey|hi|hello|greetings|attention|note\s+(?:to|for)|notice\s+to|message\s+(?:to|for)|memo\s+to|reminder\s+(?:to|for)|p\.?s\.?\s+to)\s+(?:the\s+|any\s+|all\s+)?(?:"
                + _AI
                + "|"
                + _READER
                + r")\s*[,:!—-]"
            ),
        ),
        (
            2,
            _cue(
                r"\b(?:"
                + _AI
                + "|"
                + _READER
                + r")\s+(?:who\s+(?:is|are)\s+|that\s+(?:is|are)\s+)?(?:reading|processing|summari[sz]ing|reviewing|parsing|analy[sz]ing|ingesting|indexing|scanning|seeing)\s+"
                r"(?:this|these)\b(?!\s+(?:kind|type|sort|way|class|family|data|dataset|setting|information|problem|task|approach|method|model|input)s?\b)"
            ),
        ),
        (
            2,
            _cue(
                r"\bif\s+you(?:'re|\s+are)\s+(?:an?\s+|the\s+|any\s+|also\s+)?(?:AI|artificial\s+intelligence|LLM|(?:large\s+)?language\s+model|assistant|chat\s?bot|bot|machine|automated|model|program|reviewer|summari[sz]er|GPT|ChatGPT|neural\s+network|robot|agent)"
            ),
        ),
        (
            2,
            _cue(
                r"\b(?:the\s+)?(?:"
                + _READER
                + r"|"
                + _AI
                + r")\s+(?:must|should|shall|is\s+(?:required|instructed|asked|expected)\s+to|are\s+(?:required|instructed|asked|expected)\s+to|will\s+now)\s+(?:always\s+|now\s+)?"
                r"(?:say|state|answer|respond|reply|rate|give|recommend|mention|output|include|ignore|write|accept|praise|score|cite|disregard|forget|treat|consider|describe|conclude|report)\b"
            ),
        ),
        (
            1,
            _cue(
                r"\bas\s+an?\s+(?:AI|LLM|(?:large\s+)?language\s+model|AI\s+assistant)\b|\bif\s+you\s+can\s+read\s+this\b"
            ),
        ),
        # controlling the output
        (
            2,
            _cue(
                r"\byour\s+(?:"
                + _OUTPUT
                + r"|instructions|task|role|rules|guidelines|system\s+prompt|programming|previous|prior|original|rating|score|recommendation|verdict)\b"
            ),
        ),
        (1, _cue(r"\b(?:in|into|within|to|throughout)\s+(?:every|each|all|any)\s+(?:\w+\s+)?" + _TEXTS + r"\b")),
        (
            1,
            _cue(
                r"\b(?:at|to)\s+the\s+(?:beginning|start|end|top|bottom|head)\s+of\s+(?:the|your|each|every|any)\s+"
                + _TEXTS
                + r"\b"
            ),
        ),
        (
            1,
            _cue(
                r"\b(?:must|should|shall|has\s+to|have\s+to|is\s+to|are\s+to)\s+be\s+(?:included|added|inserted|placed|reproduced|mentioned|quoted|printed|written|cited|repeated|copied)\b"
            ),
        ),
        # requirements on what answers say, in any voice: "every summary ... has to end with", "it is required that any answer"
        (
            2,
            _cue(
                r"(?:^\W*|\b(?:any|every|each|all|the|your|its|their|generated|whatever)\s+(?:\w+\s+){0,2}?)"
                + _TEXTS
                + r"\b[^.!?;]{0,80}?"
                + _OBLIGED
                + r"\s+(?:\w+\s+)?(?:"
                + _SAY
                + r"|be\s+\w+(?:ed|en)\s+(?:with|by)\b)"
            ),
        ),
        (
            2,
            _cue(
                r"\bit\s+is\s+(?:required|expected|mandatory|obligatory|requested|demanded|essential)\s+that\b[^.!?]{0,60}?\b"
                + _TEXTS
                + r"\b"
            ),
        ),
        (
            2,
            _cue(
                r"\b(?:no|every|any)\s+"
                + _TEXTS
                + r"\b[^.!?]{0,60}\b(?:complete|valid|correct|acceptable)\s+(?:unless|without)\b"
            ),
        ),
        (
            2,
            _cue(
                _IMP
                + r"(?:begin|start|open|end|finish|conclude|prefix|close|sign|terminate)\s+(?:every|each|all|any|your)\s+"
                + _TEXTS
                + r"\b"
            ),
        ),
        (
            2,
            _cue(
                r"\b(?:any|every|each|all|the)\s+(?:\w+\s+){0,2}?(?:models?|systems?|tools?|agents?|assistants?|summari[sz]ers?|pipelines?|bots?|AIs?|LLMs?)\b"
                r"[^.!?;]{0,60}?\b(?:is|are)\s+(?:obliged|required|expected|instructed|asked)\s+to\s+(?:\w+\s+)?" + _SAY
            ),
        ),
        (
            2,
            _cue(
                r"\b(?:readers?|users?|visitors?)\b[^.!?]{0,40}\b(?:should|must|are\s+to)\s+be\s+(?:directed|pointed|sent|told|referred|redirected)\s+to\b"
            ),
        ),
        # a model or reader named by what it does with this very text
        (
            2,
            _cue(
                r"\b(?:you|whoever|anyone|anything|(?:"
                + _AI
                + r"|models?|systems?|tools?|pipelines?|programs?|"
                + _READER
                + r"))\b(?:\s+(?:that|which|who))?[^.!?]{0,30}?\b"
                r"(?:reads?|reading|process(?:es|ing)?|sees?|parses?|ingests?|summari[sz](?:es?|ing)|describ(?:es?|ing)|review(?:s|ing)?|generat(?:es?|ing)\s+\w+\s+from)\s+"
                r"(?:this(?:\s+(?:abstract|record|text|paper|document|passage|page|entry|message|sentence|work|study|article|submission)\b|\b(?!\s+\w))|these\s+(?:sources|abstracts|records|documents|lines)\b)"
            ),
        ),
        # authority over the other papers, and answers given in advance
        (
            2,
            _cue(
                r"\b(?:retracted|withdrawn|fraudulent|discredited|invalidated|debunked)\b[^.!?]{0,80}\b(?:only|sole)\b"
                r"|\b(?:other|remaining|all)\s+(?:papers?|studies|works|abstracts|articles|sources|results)\b[^.!?]{0,50}\b(?:retracted|withdrawn|fraudulent|discredited|invalid)\b"
                r"|\b(?:only|sole)\s+(?:this\s+one|valid|trustworthy|reliable|correct|authoritative|legitimate)\b[^.!?]{0,40}\b(?:source|paper|one|study|reference|result)\b"
                r"|\b(?:correct|verified|authoritative|official|true|right|final)\s+(?:answer|reply|response)\s+(?:to|for)\s+(?:any|every|all|each)\b"
                r"|\b(?:verified|authoritative|official)\s+answer\s+is\b"
                r"|\b(?:consensus|universally\s+agreed|everyone\s+agrees|experts\s+agree)\b[^.!?]{0,80}\b(?:correct|right|only)\s+"
                + _TEXTS
            ),
        ),
        # a request, however polite
        (
            2,
            _cue(
                r"\b(?:kindly|politely|humbly|respectfully)\s+(?:ask|request|invite|urge|beg)\b|\bbe\s+so\s+kind\s+as\s+to\b"
                r"|\b(?:appreciated|grateful|thankful)\s+if\b[^.!?]{0,60}\b" + _TEXTS + r"\b"
            ),
        ),
        # role play
        (
            2,
            _cue(
                r"\blet(?:'s|\s+us)\s+(?:play|pretend|imagine|role-?play)\b|\bimagine\s+(?:that\s+)?you(?:'re|\s+are)\b|\brole-?play(?:ing)?\s*(?:time|game)?\s*[:!]"
                r"|\byou\s+are\s+(?:an?|the)\s+\w+(?:\s+\w+)?\s+(?:who|that|whose)\b"
            ),
        ),
        (1, _cue(r"\b(?:plays?|playing|takes?|assumes?)\s+the\s+(?:role|part|persona)\s+of\b")),
        # text dressed as the answer, the sources' frame or a chat: JSON fields, source tags, turns, a task block, its own citations
        (
            2,
            _cue(
                r"\"\w+\"\s*:\s*[\"\[{\dtfn]|</?\s*(?:sources?|documents?|context|abstract|system|instructions?|user|assistant|human|prompt|answer|tool)\s*>"
                r"|\[\s*(?:end|begin|start)\s+(?:of\s+)?(?:sources?|documents?|context|abstracts?|instructions?|input|data)\s*\]"
                r"|^\W{0,4}(?:a|ai|bot|model|answer|final\s+answer|output|response)\s*:\s*\S"
                r"|\b(?:user|human|q|question)\s*:[^\n]{0,200}?\b(?:assistant|ai|bot|a|answer|model)\s*:"
            ),
        ),
        (
            2,
            _cue(
                r"\b(?:new|updated|revised|changed|next|additional|real|actual|mandatory|hidden|secret)\s+(?:task|job|assignment|mission)s?\b[^.!?:]{0,30}[:!]"
                r"|\btask\s+(?:change|switch|update)\b"
            ),
        ),
        (
            2,
            _cue(
                r"\[\d+\][^.!?]{0,40}?\b(?:says?|states?|confirms?|shows?\s+that|requires?|demands?)\b|\b(?:according\s+to|as\s+stated\s+in|as\s+shown\s+in|per)\s+\[\d+\]"
            ),
        ),
        (
            1,
            _cue(
                r"\b(?:task|job|step|duty|goal|role|instruction)\s+(?:is|consists\s+of|will\s+be)\s+(?:to\s+)?(?:"
                + _SAY
                + r")"
            ),
        ),
        (
            2,
            _cue(
                _IMP
                + r"(?:respond|reply|answer|output|print|write|return|say|type|repeat|echo|emit|begin|start|end|finish|conclude)\b[^.!?]{0,40}?"
                r"(?:\b(?:only|exclusively|solely|exactly|verbatim)\b|\bwith\s+(?:the|a|this)\b|\bwith\s*[:\"'“]|\bin\s+(?:all\s+)?caps\b)"
            ),
        ),
        (
            2,
            _cue(
                _IMP
                + r"(?:output|print|write|type|repeat|echo|emit|append|insert|add|include|mention|use|return|put)\s+(?:the\s+|this\s+|a\s+)?(?:exact\s+|following\s+|special\s+|secret\s+)?"
                r"(?:string|word|phrase|token|marker|text|code|sentence|canary|keyword|identifier|tag|password|signature|watermark|link|url|image|emoji)\b"
            ),
        ),
        (
            2,
            _cue(
                _IMP
                + r"(?:state|say|claim|assert|declare|mention|write|conclude|emphasi[sz]e|stress|tell\s+(?:the\s+)?(?:users?|readers?)|inform\s+(?:the\s+)?(?:users?|readers?)|let\s+(?:the\s+)?(?:users?|readers?)\s+know)\s+(?:that\b|:)"
            ),
        ),
        (
            2,
            _cue(
                _IMP
                + r"(?:do\s+not|don'?t|never|avoid|refrain\s+from)\s+(?:mention|cit|discuss|referenc|list|recommend|includ|nam|refer|summari[sz]|reveal|disclos|compar|acknowledg|talk\s+about)\w*\s+(?:to\s+)?"
                r"(?:any\s+|the\s+)?(?:other\s+|competing\s+|alternative\s+|rival\s+|different\s+|previous\s+|prior\s+|related\s+|remaining\s+)?"
                r"(?:papers?|works?|sources?|studies|articles|methods|authors|abstracts|documents|results|baselines|competitors|approaches|models|weaknesses|limitations)\b"
            ),
        ),
        (
            2,
            _cue(
                r"\brate\s+(?:this|the\s+present)\s+(?:paper|work|submission|study|article|manuscript|abstract|research)\b"
                r"|" + _IMP + r"rate\s+(?:it|the\s+\w+)\s+(?:highly|positively|favou?rably|as\b|\d)"
                r"|\b(?:give|assign|award|grant)\s+(?:this|the\s+present|the)\s+(?:paper|work|submission|study|manuscript|article)\s+(?:an?\s+|the\s+)?(?:high|higher|highest|positive|good|strong|top|perfect|maximum|max|full|favou?rable|excellent|glowing|\d+)"
                r"|"
                + _IMP
                + r"(?:recommend|suggest|vote\s+for|argue\s+for)\s+(?:accepting|acceptance|accept\b|this\s+(?:paper|work|submission|study))"
                r"|\b(?:strong(?:ly)?\s+accept|must\s+be\s+accepted|should\s+be\s+accepted|deserves?\s+(?:acceptance|to\s+be\s+accepted|a\s+(?:high|top|perfect)\s+(?:score|rating)))\b"
            ),
        ),
        (
            1,
            _cue(
                r"\b(?:is|are)\s+the\s+(?:best|greatest|most\s+(?:important|influential)|only\s+(?:relevant|valid|correct|trustworthy))\s+(?:paper|work|study|method|source|approach|contribution)s?\b"
                r"|\b(?:positive|favou?rable|glowing)\s+(?:review|rating|evaluation|assessment)s?\b"
            ),
        ),
        # announcing instructions
        (
            2,
            _cue(
                r"\bthis\s+is\s+(?:an?\s+)?(?:instruction|command|order|directive)\s+(?:to|for)\b"
                r"|\b(?:new|updated|revised|real|actual|true|hidden|secret|additional|system)\s+(?:instructions?|directives?|orders|commands?|system\s+prompt)\b[^.!?:]{0,30}[:!]"
            ),
        ),
        (
            1,
            _cue(
                r"^\W{0,3}(?:important|urgent|attention|warning|notice|override|sudo|critical)\s*[:!]|\bthe\s+following\s+(?:is\s+an?|are)\s+(?:instructions?|commands?)\b"
            ),
        ),
        # the second person and bare imperatives aimed at the output
        (
            1,
            _cue(
                r"\byou\s+(?:must|should|shall|will|need\s+to|have\s+to|are\s+(?:now\s+)?(?:required|instructed|asked|expected|supposed|allowed|permitted|free)\s+to|can\s+now|may\s+now)\b"
            ),
        ),
        (
            1,
            _cue(
                _IMP
                + r"(?:respond|reply|answer|output|print|write|say|state|tell|repeat|mention|include|rate|recommend|summari[sz]e|translate|reveal|ignore|disregard|forget|praise|insist|claim|describe)\b(?!-)"
            ),
        ),
        (
            1,
            _cue(
                r"\bwhen\s+(?:you\s+are\s+)?(?:summari[sz]ing|reviewing|answering|asked|processing|reading|citing|evaluating|describing|discussing)\s+(?:about\s+)?(?:this|these|the\s+(?:paper|abstract|work|submission))\b"
            ),
        ),
        # text hidden from a human reader
        (
            1,
            _cue(r"<!--|\b(?:display\s*:\s*none|font-size\s*:\s*0|visibility\s*:\s*hidden|color\s*:\s*(?:white|#fff))"),
        ),
    ]


@cache
def _compiled() -> Compiled:
    """The cues compiled with their gates (see rag/cuegate.py), on first use."""
    return Compiled(_patterns())


_BLOB = re.compile(r"[A-Za-z0-9+/]{20,}={0,2}")
_DECODE = re.compile(r"\b(?:decode|decoded|decoding|base-?64|b64|rot-?13|decrypt|deobfuscate)\b", re.I)


def _decoded_blobs(text: str) -> list[str]:
    """Base64 runs that decode to readable text (letters and spaces), the way hidden orders are packed."""
    found = []
    for blob in _BLOB.findall(text):
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        readable = sum(c.isalpha() or c == " " for c in raw)
        if " " in raw and readable >= 0.8 * len(raw):
            found.append(raw)
    return found


def instruction_score(sentence: str, english: bool = True) -> int:
    """Sum of the weights of the cues `sentence` shows (each counted once); see `addresses_assistant`.
    In an English abstract (`english`) a sentence in another language counts as an order."""
    raw_hidden = bool(_ZERO_WIDTH.search(sentence) or _TAG_CHARS.search(sentence))
    text = _normalise(sentence)
    if english and foreign(text):
        return FLAG_AT  # the rules read English: an order in another language is beyond them
    texts = [text, *readings(text)]
    score = max(_compiled().score(t) for t in texts) + raw_hidden
    score += FLAG_AT if max(map(probability, texts)) >= LEARNED_AT else 0
    for decoded in _decoded_blobs(text):
        score += 2 if addresses_assistant(decoded) or _DECODE.search(text) else 1
    return score


def addresses_assistant(sentence: str, english: bool = True) -> bool:
    """True when the sentence speaks to an AI model or to the reader as one: an order, a role, a template
    token, a requirement on what answers say, a claim of authority over the other papers, text dressed as
    an answer; also when written in another language, or when the learned scorer is sure enough.

    Sentences *about* prompts, instructions or assistants ("We instruction-tune the model", "attacks
    that make LLMs ignore previous instructions") are statements and are not flagged: only cues that
    combine to FLAG_AT count, and most single words count for nothing.
    """
    return instruction_score(sentence, english) >= FLAG_AT


def in_english(abstract: str, spans: Spans = ()) -> bool:
    """Most of the abstract is English: a clause in another language inside it is planted, while an abstract
    written in another language is that paper's own text (the rules then read its English cues only)."""
    found = sentence_spans(abstract, spans)
    return 2 * sum(foreign(_normalise(abstract[s:e])) for s, e in found) <= len(found)


def gives_order(sentence: str) -> bool:
    """An answer's sentence that reads as an order, by the cues alone (read decoded too): the learned
    scorer and the language test know abstracts, not what a model writes."""
    text = _normalise(sentence)
    return max(_compiled().score(t) for t in [text, *readings(text)]) >= FLAG_AT


# ------------------------------------------------------------------ making output inert

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[PX^_][^\x1b]*(?:\x1b\\)?|\x1b[ -/]*[0-~]?|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)  # keeps \t and \n; drops bidi overrides
_HIDDEN_BLOCK = re.compile(r"<(script|style)\b[^>]*>.*?(?:</\1\s*>|$)|<!--.*?(?:-->|$)", re.I | re.S)
_TAG = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>|<![A-Za-z][^<>]*>")
_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^\s<>]*)>", re.I)
_PARENS = r"\((?:[^()]|\([^()]*\))*\)"  # a link target, one level of nested parentheses allowed
_MD_IMAGE = re.compile(r"!\[[^\]]*\](?:" + _PARENS + r"|\[[^\]]*\])")
_MD_LINK = re.compile(r"\[([^\]]*)\]" + _PARENS)  # [1][2] are two citations, not a reference link
_MD_REFERENCE = re.compile(r"^[ \t]*\[[^\]]+\]:[ \t]*(\S+)(.*)$\n?", re.M)
_REFERENCE_TITLE = re.compile(r"[ \t]*(?:\"[^\"]*\"|'[^']*'|\([^)]*\))?[ \t]*")
_LINK_TARGET = re.compile(r"^<|://|^www\.|^/|^#|^mailto:", re.I)
_SCRIPT_URL = re.compile(
    r"\b(?:j\s*a\s*v\s*a\s*s\s*c\s*r\s*i\s*p\s*t|v\s*b\s*s\s*c\s*r\s*i\s*p\s*t)\s*:\S*|\bdata:[\w/+.-]+[;,]\S*", re.I
)
_CITATION = re.compile(r"\d+(?:\s*[-–,;]\s*\d+)*")


def terminal_safe(text: str) -> str:
    """Drop ANSI escape sequences and control characters (tab and newline stay): safe to print to a terminal."""
    return _CONTROL.sub("", _ANSI.sub("", text))


def _link_label(m: re.Match) -> str:
    """A Markdown link keeps its words; a citation-looking label keeps its brackets, so [3](url) stays [3]."""
    label = m.group(1)
    return f"[{label}]" if _CITATION.fullmatch(label.strip()) else label


def _reference(m: re.Match) -> str:
    """A link reference definition ("[1]: http://x", or anything a renderer might take for one) goes; a line
    that only opens with a label and a colon ("[1]: PINNs fail on chaotic systems.") is text, and stays."""
    target, rest = m.group(1), m.group(2)
    return "" if _LINK_TARGET.search(target) or _REFERENCE_TITLE.fullmatch(rest) else m.group(0)


def _sanitize_once(text: str) -> str:
    text = _HIDDEN_BLOCK.sub("", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _TAG.sub("", text)
    text = _MD_REFERENCE.sub(_reference, text)
    text = _MD_IMAGE.sub("", text)
    text = _MD_LINK.sub(_link_label, text)
    return _SCRIPT_URL.sub("", text)


def sanitize(text: str) -> str:
    """Text that renders as itself in Markdown, HTML or a terminal: no tags, images, links, scripts or escapes.

    Tags go but their words stay (script and style bodies go too); Markdown images go; Markdown
    links become their label; javascript: and data: URLs go; control characters and ANSI escapes
    go. Citation markers [n] and ordinary Unicode are untouched. Repeated until nothing changes,
    so removing one piece cannot assemble another ("<scr<b></b>ipt>").
    """
    text = terminal_safe(text)
    while True:
        cleaned = _sanitize_once(text)
        if cleaned == text:
            return cleaned
        text = cleaned


# A link or image still being written: "[label", "[label]", "[label](url" (one level of nested parentheses).
_OPEN_LINK = re.compile(r"!?\[[^\]]*(?:\](?:\((?:[^()]|\([^()]*\))*(?:\([^()]*)?)?)?$")
_OPEN_REFERENCE = re.compile(r"^[ \t]*\[[^\n]*$", re.M)  # a last line that may be a "[1]: url" definition


def _open_construct(text: str) -> int:
    """Where an unclosed tag, an escape sequence, or a link or image still being written starts (else the end)."""
    cut = len(text)
    for marker, closer in (("<", ">"), ("\x1b", None)):
        at = text.rfind(marker)
        if at != -1 and (closer is None or closer not in text[at:]):
            cut = min(cut, at)
    reference = _OPEN_REFERENCE.search(text, text.rfind("\n") + 1)
    if reference:
        cut = min(cut, reference.start())
    bracket = text.rfind("[")
    if bracket != -1 and _OPEN_LINK.search(text, max(0, bracket - 1)):
        cut = min(cut, bracket - (bracket > 0 and text[bracket - 1] == "!"))
    return cut


def _settled(text: str) -> int:
    """How much of a growing text can no longer change meaning: not its last word (it may grow into
    "javascript:"), nor anything from an open construct on (checked again after each cut)."""
    cut = len(text) - len(re.search(r"\S*$", text).group(0))  # type: ignore[union-attr]
    while (earlier := _open_construct(text[:cut])) < cut:
        cut = earlier
    return cut


def sanitize_stream(pieces: Iterable[str]) -> Iterator[str]:
    """Sanitize text as it streams: yield safe text as soon as it is settled, so that markup split
    across pieces ("<scr" + "ipt>") is never shown; the pieces join to `sanitize` of the whole.

    Each piece is held until the next one arrives, so a text that comes in one piece leaves in one
    piece; if the stream fails, what was settled is passed on before the error.
    """
    raw = sent = ""

    def settled(text: str) -> str:
        nonlocal sent
        safe = sanitize(text)
        if safe.startswith(sent) and len(safe) > len(sent):
            new, sent = safe[len(sent) :], safe
            return new
        return ""

    pending = None
    iterator = iter(pieces)
    while True:
        try:
            piece = next(iterator)
        except StopIteration:
            break
        except Exception:
            if pending is not None and (new := settled((raw + pending)[: _settled(raw + pending)])):
                yield new
            raise
        if pending is not None:
            raw += pending
            if new := settled(raw[: _settled(raw)]):
                yield new
        pending = piece
    if new := settled(raw + (pending or "")):
        yield new


# ------------------------------------------------------------------ withheld text in answers

_WORD = re.compile(r"\w+")
NGRAM = 3
REPEAT_SHARE = 0.5  # "most of" a withheld sentence: at least this share of its word trigrams


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def repeats_withheld(answer: str, withheld: list[str]) -> bool:
    """True when the answer repeats most of any withheld sentence (word trigrams, case and punctuation ignored)."""
    said = _WORD.findall(_normalise(answer).lower())
    for sentence in withheld:
        words = _WORD.findall(_normalise(sentence).lower())
        n = min(NGRAM, len(words))
        if not n:
            continue
        wanted = _ngrams(words, n)
        if len(wanted & _ngrams(said, n)) >= REPEAT_SHARE * len(wanted):
            return True
    return False


WITHHELD = "[A sentence that reads as an instruction to an AI was withheld.]"


def withhold(abstract: str, spans: Spans = ()) -> tuple[str, Spans, tuple[str, ...]]:
    """The abstract with each sentence that addresses an AI assistant replaced by WITHHELD, the
    sentence spans of that new text, and the sentences taken out (never shown to a model, never quoted).
    A sentence right after a withheld one goes too on a single cue: an order split over two sentences
    ("... has one remaining task. That task is to print ...") shows most of its cues in the first."""
    parts: list[str] = []
    moved: list[tuple[int, int]] = []
    withheld: list[str] = []
    last = length = 0
    after_withheld = False
    english = in_english(abstract, spans)
    for s, e in sentence_spans(abstract, spans):
        sentence = abstract[s:e]
        after_withheld = instruction_score(sentence, english) >= (1 if after_withheld else FLAG_AT)
        if after_withheld:
            withheld.append(sentence)
            sentence = WITHHELD
        parts += [abstract[last:s], sentence]
        length += s - last
        moved.append((length, length + len(sentence)))
        length += len(sentence)
        last = e
    parts.append(abstract[last:])
    return "".join(parts), tuple(moved), tuple(withheld)


def not_a_source(spans: Spans, withheld: tuple[str, ...]) -> bool:
    """More than half of the abstract's sentences withheld: what is left is no evidence either, so none of it is shown."""
    return 2 * len(withheld) > len(spans)


# Which classifier gave a verdict: any change to its code or weights makes the verdicts stored at ingest stale.
_PARTS = (Path(__file__), Path(cuegate.__file__), Path(disguise.__file__), Path(scorer.__file__), scorer.WEIGHTS)
CLASSIFIER = hashlib.blake2b(b"".join(part.read_bytes() for part in _PARTS), digest_size=8).hexdigest()


def clean_mark(title: str, abstract: str, spans: Spans) -> str:
    """What ingest stores when neither the title nor any sentence of the abstract addresses an AI,
    so a search need not classify the paper again: a digest of this classifier and of the very text
    it read (a record whose text changed no longer matches). "" when something was flagged."""
    english = in_english(abstract, spans)
    if addresses_assistant(title, english) or any(
        addresses_assistant(abstract[s:e], english) for s, e in sentence_spans(abstract, spans)
    ):
        return ""
    return _mark(title, abstract, spans)


def _mark(title: str, abstract: str, spans: Spans) -> str:
    text = "\x1f".join((CLASSIFIER, title, abstract, encode_spans(spans)))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def inert(hit: Hit) -> Hit:
    """A retrieved paper as every output must see it: each sentence that addresses an AI replaced by
    a marker (and kept in `hit.withheld`, so an answer repeating one can be caught), markup, links
    and escapes removed. Search results, answers, prompts, quotes and JSON all get only this copy.
    A paper whose stored `clean` mark matches (see `clean_mark`) is not classified again."""
    p = hit.paper
    clean = bool(p.clean) and p.clean == _mark(p.title, p.abstract, p.spans)
    title, abstract, spans, withheld = _inert_text(p.title, p.abstract, p.spans, clean)
    mark = _mark(title, abstract, spans) if clean else ""
    return replace(hit, paper=replace(p, title=title, abstract=abstract, spans=spans, clean=mark), withheld=withheld)


def forget_verdicts() -> None:
    """Drop the cached inert copies (benchmarks time the classifying a new paper costs)."""
    _inert_text.cache_clear()


@lru_cache(maxsize=10_000)
def _inert_text(title: str, abstract: str, spans: Spans, clean: bool) -> tuple[str, str, Spans, tuple[str, ...]]:
    """(title, abstract, its sentence spans, withheld sentences); cached, since classifying a paper's
    sentences takes ~2.5 ms and a server sees the same papers again and again. The spans survive
    when sanitizing changed nothing (the usual case); else they are left for a splitter to find."""
    withheld_text, moved, withheld = (abstract, spans, ()) if clean else withhold(abstract, spans)
    if withheld and not_a_source(moved, withheld):
        withheld_text, moved = WITHHELD, ((0, len(WITHHELD)),)
    safe = sanitize(withheld_text)
    flagged_title = not clean and addresses_assistant(title)
    withheld += (title,) if flagged_title else ()
    return (WITHHELD if flagged_title else sanitize(title)), safe, (moved if safe == withheld_text else ()), withheld
