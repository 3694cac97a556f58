"""The numbers chosen by measuring, in one place, with where each came from.

Every value here was chosen on the `dev` split of `eval/datasets/` (or, for the LLM judge, on dev
questions with the local model named) and is reported on `test`; BENCHMARKS.md has the tables. They are
not settings: changing one changes what the product answers, so it is changed here, with a new measurement.
The deployment knobs (paths, endpoints, limits, timeouts) are in `rag/config.py`.
"""

# Hybrid fusion and the refusal floor, chosen by `python eval/tune.py` on dev (it prints the grid behind each):
# the least share of BM25 in the weighted sum (it rises toward 1 as the best BM25 paper holds more of the
# query's words), and the best paper's relevance (0-1) below which a question is refused. They stay
# overridable (RAG_BM25_WEIGHT, RAG_REFUSE_BELOW) so that the tuning script can vary them, but are not listed
# among the settings.
BM25_WEIGHT = 0.3
REFUSE_BELOW = 0.24

# The offline judge (rag/evidence.py). Dev "which papers" questions: cited-paper precision 0.46 -> 0.66,
# recall 0.79 -> 0.63.
KEY_IDF = 2.0  # a question term at least this rare (IDF) names one of its concepts
ANCHORED = 0.5  # some candidate holds at least this IDF-weighted share of the key terms: the question is anchored
KEY_SHARE = 0.7  # anchored: a relevant paper holds at least this share of what the best paper holds
SCORE_SHARE = 0.3  # anchored: and at least this share of the best retrieval score
TOPIC_CORPUS = 50
# A question not in the corpus's words (not anchored): the top READ_TOP papers by retrieval score are read sentence by
# sentence, and CONCEPT_WEIGHT times how close their sentences come to the question's least covered concept is added to
# their score. Dev lookups not anchored (24): the right paper first 12 -> 16 (2, 3, 5 and 10 papers read alike; weight
# 0.3: 15, 0.8: 16); concepts as any run of content words or only runs holding a rare term: the same.
READ_TOP = 3
CONCEPT_WEIGHT = 0.5  # below this many papers every word is rare, and a two-word topic check means nothing

# The LLM judge (rag/evidence.py), on dev "which papers" questions with Qwen2.5-Coder-1.5B (prompts/judge.txt):
# its P(yes) ranks the right papers well but sits in a narrow band (0.48-0.77), so the cut is relative to the best.
LLM_FLOOR = 0.5  # below this the model said no
LLM_GAP = 0.03  # relevant papers are within this of the best paper's probability
LLM_SPREAD = 0.03  # probabilities closer together than this carry no verdict: the offline judgement stands

# Closeness to the best paper when no paper holds the question's rare words (rag/relevance.py): the mean of the
# retrieval score's share of the best one and the rare-term coverage's share of the best one.
# Dev multi questions: cited-paper precision 0.42 -> 0.46, gold recall 0.77 -> 0.81.
LIST_KEEP = 0.5
# With a year filter, a paper it lets through counts only at this share of the relevance of the best paper of any
# year. Dev: 7 of the 8 gold papers 0.87-0.98 (the eighth, 0.46, was not listed before either); off-topic papers
# of the filtered years 0.28-0.47.
FILTER_KEEP = 0.6
# A lookup cites, besides the best paper, any other at least this close to it (rag/extractive.py).
NEAR = 0.95

# The citation check (rag/cite.py): the share of a claim's content words that the cited sentence (or title) must
# contain for the claim to count as supported.
SUPPORT_THRESHOLD = 0.4
