"""Reader rules: what matches and what doesn't, and why.

The table below is the specification of the README's "Reader rules" section, one row per
claim, grouped as the README groups them. Every text in it is copied from a real title,
abstract, author list, organization or AI-keyword list of the sample pages (a test checks
this), except the few rows marked ``edited``, which say what was changed and why.
"""

from __future__ import annotations

import builtins
import dataclasses
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fakehf import SAMPLES
from paperwatch import match, query, scan, tokens
from paperwatch.errors import ConfigError, RuleError
from paperwatch.match import Hit, Matcher, RuleSpec, required_text, rule_problems
from paperwatch.models import Paper

Why = tuple[tuple[str, str, str], ...]  # (term as the rule wrote it, field, the paper's text)


@dataclass(frozen=True)
class Case:
    what: str  # the claim, as the README would state it
    rule: Mapping[str, Any]  # RuleSpec keywords
    paper: Mapping[str, Any]  # Paper keywords: title, summary, authors, organization, ai_keywords, upvotes
    matches: bool
    why: Why | None = None  # the hits expected, in order; None: not checked
    edited: str = ""  # why the paper's text is not verbatim from the samples


def abstract(text: str, **more: Any) -> dict[str, Any]:
    return {"summary": text, **more}


def title(text: str, **more: Any) -> dict[str, Any]:
    return {"title": text, **more}


def authors(*names: str, **more: Any) -> dict[str, Any]:
    return {"authors": names, **more}


YES, NO = True, False

CASES = [
    # --- keywords are whole words, in any case ----------------------------------------------
    Case("case does not matter", {"keywords": ["GROKKING"]},
         abstract("Grokking, or delayed generalization, is a phenomenon"), YES,
         (("GROKKING", "abstract", "Grokking"),)),
    Case("a word is found beside punctuation and brackets", {"keywords": ["ctr"]},
         abstract("As an important modeling paradigm in click-through rate (CTR) prediction"), YES,
         (("ctr", "abstract", "CTR"),)),
    Case("GAN never matches inside 'organized'", {"keywords": ["GAN"]},
         abstract("the 1st Machine Learning Challenge organized for the European Space Agency's upcoming "
                  "Ariel mission"),
         NO),
    Case("nor the start of a longer word: grok is not grokking", {"keywords": ["grok"]},
         abstract("Grokking, or delayed generalization, is a phenomenon"), NO),
    Case("nor the end of one: Net is not DeltaNet", {"keywords": ["Net"]},
         abstract("This algorithm allows us to scale up DeltaNet to standard language modeling settings."), NO),
    Case("a hyphen separates words: linear is a word of non-linear", {"keywords": ["linear"]},
         abstract("Successful solutions either construct highly non-linear (w.r.t. the raw data) models"), YES,
         (("linear", "abstract", "linear"),)),
    # --- accents, ligatures and dashes don't matter --------------------------------------------
    Case("accents in the keyword don't matter", {"keywords": ["régime"]},
         abstract("as long as they operate in a special regime known as the edge of chaos."), YES,
         (("régime", "abstract", "regime"),)),
    Case("nor in the paper, whose spelling the why shows", {"keywords": ["role"]},
         abstract("we first adaptively generate as many neuron rôles as possible for each evaluation sample."), YES,
         (("role", "abstract", "rôles"),), edited="an accent added"),
    Case("a ligature in the keyword is its letters", {"keywords": ["ﬁne-tuning"]},
         abstract("a similar factorial complexity for determining block-wise fine-tuning order"), YES,
         (("ﬁne-tuning", "abstract", "fine-tuning"),)),
    Case("and in the paper", {"keywords": ["fine-tuned"]},
         abstract("the last few layers are ﬁne-tuned (re-trained) over the target dataset."), YES,
         (("fine-tuned", "abstract", "ﬁne-tuned"),), edited="the ligature ﬁ, as text copied from a PDF has it"),
    Case("every Unicode dash is a hyphen", {"keywords": ["block-wise"]},
         abstract("a similar factorial complexity for determining block\u2010wise fine-tuning order"), YES,
         (("block-wise", "abstract", "block\u2010wise"),), edited="U+2010 HYPHEN for the ASCII one"),
    # --- hyphen, space and nothing are the same inside a keyword -----------------------------
    Case("pretraining finds pre-training", {"keywords": ["pretraining"]},
         abstract("a new class of random orthogonal initial conditions on weights that, like unsupervised "
                  "pre-training, enjoys depth independent learning times."), YES,
         (("pretraining", "abstract", "pre-training"),)),
    Case("pre-training finds pretraining", {"keywords": ["pre-training"]},
         abstract("faster convergence from greedy unsupervised pretraining initial conditions"), YES,
         (("pre-training", "abstract", "pretraining"),)),
    Case("pre training finds pre-training", {"keywords": ["pre training"]},
         abstract("to show that pre-training on certain tasks can damage the transfer performance on new tasks"), YES,
         (("pre training", "abstract", "pre-training"),)),
    Case("multitask finds multi-task", {"keywords": ["multitask"]},
         abstract("Finally, we extend our analysis to multi-task learning"), YES,
         (("multitask", "abstract", "multi-task"),)),
    Case("data set finds dataset", {"keywords": ["data set"]},
         abstract("In this paper we introduce CosmoBench, a benchmark dataset curated from state-of-the-art "
                  "cosmological simulations"), YES,
         (("data set", "abstract", "dataset"),)),
    Case("state of the art finds state-of-the-art", {"keywords": ["state of the art"]},
         abstract("a benchmark dataset curated from state-of-the-art cosmological simulations"), YES,
         (("state of the art", "abstract", "state-of-the-art"),)),
    Case("but a one-word keyword is not split: dataset does not find data set", {"keywords": ["dataset"]},
         abstract("and set a new record at an astronomy data set."), NO),
    # --- a keyword also matches its regular plural ---------------------------------------------
    Case("network finds networks", {"keywords": ["network"]},
         abstract("while leveraging deep neural networks (DNN) to implicitly capture higher-order feature "
                  "interactions"),
         YES, (("network", "abstract", "networks"),)),
    Case("study finds studies", {"keywords": ["study"]},
         abstract("Previous studies have reported the occurrence of grokking in specific controlled settings"), YES,
         (("study", "abstract", "studies"),)),
    Case("the plural does not find the singular", {"keywords": ["studies"]},
         abstract("For the latter, we study different approaches"), NO),
    Case("an acronym has a plural too", {"keywords": ["DNN"]},
         abstract("Deep Neural Networks (DNNs) have been a large driver and enabler for AI breakthroughs"), YES,
         (("DNN", "abstract", "DNNs"),)),
    Case("a phrase's last word may be plural", {"keywords": ["neural network"]},
         abstract("Deep Neural Networks (DNNs) have been a large driver and enabler for AI breakthroughs"), YES,
         (("neural network", "abstract", "Neural Networks"),)),
    Case("but only its last word", {"keywords": ["neural network trained"]},
         abstract("Deep learning employs multi-layer neural networks trained via the backpropagation algorithm."), NO),
    Case("a hyphenated phrase and its plural", {"keywords": ["black box"]},
         abstract("DNN models tend to be unavoidably opaque and perceived as black-box methods"), YES,
         (("black box", "abstract", "black-box"),)),
    Case("prior finds priors", {"keywords": ["prior"]},
         abstract("reliance on finely tuned hyperparameters, and rigid priors that limit adaptability"), YES,
         (("prior", "abstract", "priors"),)),
    # --- * at a word's end is a prefix wildcard ------------------------------------------------
    Case("diffus* finds diffusion", {"keywords": ["diffus*"]},
         abstract("cerebrospinal fluid (CSF) samples and diffusion tensor imaging (DTI)."), YES,
         (("diffus*", "abstract", "diffusion"),)),
    Case("grok* finds Grokking", {"keywords": ["grok*"]},
         abstract("Grokking, or delayed generalization, is a phenomenon"), YES,
         (("grok*", "abstract", "Grokking"),)),
    Case("a wildcard is a prefix, not a substring", {"keywords": ["former*"]},
         title("Gated Linear Attention Transformers with Hardware-Efficient Training"), NO),
    Case("a wildcard may end a phrase", {"keywords": ["linear transform*"]},
         abstract("Transformers with linear attention (i.e., linear transformers) and state-space models"), YES,
         (("linear transform*", "abstract", "linear transformers"),)),
    Case("pretrain* finds pre-trained", {"keywords": ["pretrain*"]},
         abstract("by using the pre-trained deep networks trained on large-scale datasets."), YES,
         (("pretrain*", "abstract", "pre-trained"),)),
    Case("quantiz* finds Quantization in a title", {"keywords": ["quantiz*"]},
         title("HAWQ: Hessian AWare Quantization of Neural Networks with Mixed-Precision"), YES,
         (("quantiz*", "title", "Quantization"),)),
    # --- several words are a phrase: in order, adjacent, within a sentence ---------------------
    Case("a quoted phrase", {"keywords": ['"linear attention"']},
         abstract("Transformers with linear attention allow for efficient parallel training"), YES,
         (('"linear attention"', "abstract", "linear attention"),)),
    Case("the words must come in order", {"keywords": ["attention linear"]},
         abstract("Transformers with linear attention allow for efficient parallel training"), NO),
    Case("and be adjacent", {"keywords": ["gated attention"]},
         title("Gated Linear Attention Transformers with Hardware-Efficient Training"), NO),
    Case("other punctuation between them is ignored", {"keywords": ["deep cross network"]},
         abstract("in click-through rate (CTR) prediction, the Deep & Cross Network (DCN) and its derivative models"),
         YES, (("deep cross network", "abstract", "Deep & Cross Network"),)),
    Case("a phrase never spans a sentence end", {"keywords": ["architecture transformers"]},
         abstract("culminating in the Transformer architecture. Transformers have achieved state-of-the-art "
                  "performance"), NO),
    Case("nor a comma", {"keywords": ["grokking or delayed"]},
         abstract("Grokking, or delayed generalization, is a phenomenon"), NO),
    Case("nor a bracket", {"keywords": ["click-through rate prediction"]},
         abstract("As an important modeling paradigm in click-through rate (CTR) prediction"), NO),
    Case("nor one AI keyword into the next", {"keywords": ["interest prediction"]},
         {"ai_keywords": ("click-through", "interest", "network", "prediction")}, NO),
    Case("a hyphen inside a phrase is a space", {"keywords": ["state space model"]},
         abstract("a recently introduced state-space model with a data-dependent state transition mechanism."), YES,
         (("state space model", "abstract", "state-space model"),)),
    # --- re: is a regular expression, searched case-insensitively in the folded text -----------
    Case("a regular expression", {"keywords": [r"re:\bcifar-?\d+"]},
         abstract("training of a convolutional neural network (CNN) on CIFAR10 or a Resnet on Imagenette."), YES,
         ((r"re:\bcifar-?\d+", "abstract", "CIFAR10"),)),
    Case("with a counted repeat", {"keywords": [r"re:\b\d{4}\b"]},
         abstract("Recent works such as RetNet (Sun et al., 2023) and TransNormerLLM (Qin et al., 2023a)"), YES,
         ((r"re:\b\d{4}\b", "abstract", "2023"),)),
    Case("with an escaped character", {"keywords": [r"re:\x67roks"]},
         abstract("whereby a DNN groks adversarial examples and becomes robust"), YES,
         ((r"re:\x67roks", "abstract", "groks"),)),
    Case("a nested repeat runs as any other", {"keywords": ["re:(gro+k+)+ing"]},
         abstract("Grokking, or delayed generalization, is a phenomenon"), YES,
         (("re:(gro+k+)+ing", "abstract", "Grokking"),)),
    Case("its word boundaries are its own business", {"keywords": [r"re:\bimagenet\b"]},
         abstract("training of a convolutional neural network (CNN) on CIFAR10 or a Resnet on Imagenette."), NO),
    Case("upper case in it changes nothing", {"keywords": [r"re:Res[Nn]et"]},
         abstract("training of a convolutional neural network (CNN) on CIFAR10 or a Resnet on Imagenette."), YES,
         ((r"re:Res[Nn]et", "abstract", "Resnet"),)),
    # --- fields: title, abstract and AI keywords, unless the rule names its own ----------------
    Case("the title is searched", {"keywords": ["cosmology"]},
         title("CosmoBench: A Multiscale, Multiview, Multitask Cosmology Benchmark for Geometric Deep Learning"), YES,
         (("cosmology", "title", "Cosmology"),)),
    Case("and the AI keywords", {"keywords": ["exoplanet"]},
         {"ai_keywords": ("challenge:", "correcting", "exoplanet", "learned")}, YES,
         (("exoplanet", "ai_keywords", "exoplanet"),)),
    Case("but author names are not searched for keywords", {"keywords": ["LeCun"]},
         authors("Shakir O'Brien", "Quoc LeCun", "Yann García"), NO),
    Case("fields = [...] narrows the search", {"keywords": ["grokking"], "fields": ["title"]},
         title("Deep Networks Always Grok and Here is Why",
               summary="Previous studies have reported the occurrence of grokking"), NO),
    Case("and may name the authors", {"keywords": ["von Luxburg"], "fields": ["authors"]},
         authors("Sanjeev von Luxburg", "Ruslan Deng", "Jia Cho", "Yoshua Abbeel"), YES,
         (("von Luxburg", "authors", "von Luxburg"),)),
    Case("or the organization", {"keywords": ["llama"], "fields": ["organization"]},
         {"organization": "Meta Llama"}, YES, (("llama", "organization", "Llama"),)),
    # --- authors: whole names, one author at a time ------------------------------------------
    Case("a full name", {"authors": ["Yoshua Bengio"]},
         authors("Ruslan García", "Anna Bottou", "Léon Cho", "Yoshua Bengio", "Chen Vapnik", "Jia Hauberg"), YES,
         (("Yoshua Bengio", "authors", "Yoshua Bengio"),)),
    Case("an initial for the given name", {"authors": ["Y. Bengio"]},
         authors("Ruslan García", "Anna Bottou", "Léon Cho", "Yoshua Bengio", "Chen Vapnik", "Jia Hauberg"), YES,
         (("Y. Bengio", "authors", "Yoshua Bengio"),)),
    Case("an initial written without a space", {"authors": ["Y.Bengio"]},
         authors("Ruslan García", "Anna Bottou", "Léon Cho", "Yoshua Bengio", "Chen Vapnik", "Jia Hauberg"), YES,
         (("Y.Bengio", "authors", "Yoshua Bengio"),)),
    Case("and the other way round", {"authors": ["Yoshua Bengio"]},
         authors("Ruslan García", "Anna Bottou", "Y. Bengio"), YES,
         (("Yoshua Bengio", "authors", "Y. Bengio"),), edited="the paper gives an initial"),
    Case("middle names are optional", {"authors": ["Yoshua A. Bengio"]},
         authors("Ruslan García", "Anna Bottou", "Léon Cho", "Yoshua Bengio", "Chen Vapnik", "Jia Hauberg"), YES),
    Case("but must agree where both give them", {"authors": ["Yoshua A. Bengio"]},
         authors("Ruslan García", "Anna Bottou", "Yoshua B. Bengio"), NO, edited="a middle initial added"),
    Case("case and accents don't matter", {"authors": ["leon cho"]},
         authors("Ruslan García", "Anna Bottou", "Léon Cho", "Yoshua Bengio"), YES,
         (("leon cho", "authors", "Léon Cho"),)),
    Case("nor letters without a decomposition", {"authors": ["Soren Zhang"]},
         authors("Yoshua Cho", "Pieter Schmidhuber", "Jürgen Mikolov", "Søren Zhang", "Fei He"), YES,
         (("Soren Zhang", "authors", "Søren Zhang"),)),
    Case("nor apostrophes", {"authors": ["Shakir OBrien"]},
         authors("Shakir O'Brien", "Quoc LeCun", "Yann García"), YES,
         (("Shakir OBrien", "authors", "Shakir O'Brien"),)),
    Case("one word is a surname", {"authors": ["Sutskever"]},
         authors("Oriol Sutskever", "Xin Peng", "Hao Xu", "Ilya Xu", "Pieter Liu"), YES,
         (("Sutskever", "authors", "Oriol Sutskever"),)),
    Case("never part of one: Li is not Liu", {"authors": ["Li"]},
         authors("Oriol Sutskever", "Xin Peng", "Hao Xu", "Ilya Xu", "Pieter Liu"), NO),
    Case("and never a given name: Li is not Li Zhang", {"authors": ["Li"]},
         authors("Li Zhang", "Tomáš Bengio", "Yoshua Deng", "Ursula Mohamed"), NO),
    Case("nor the first letters of a surname: Le is not LeCun", {"authors": ["Le"]},
         authors("Shakir O'Brien", "Quoc LeCun", "Yann García"), NO),
    Case("the given name must agree: Yann LeCun is not Quoc LeCun", {"authors": ["Yann LeCun"]},
         authors("Shakir O'Brien", "Quoc LeCun", "Yann García"), NO),
    Case("never halves of two authors", {"authors": ["Yoshua Bengio"]},
         authors("Xin Abbeel", "Ilya Bengio", "Yoshua Ghahramani"), NO),
    Case("von, de, le... may be left out", {"authors": ["Sanjeev Luxburg"]},
         authors("Sanjeev von Luxburg", "Ruslan Deng", "Jia Cho", "Yoshua Abbeel"), YES,
         (("Sanjeev Luxburg", "authors", "Sanjeev von Luxburg"),)),
    Case("or written", {"authors": ["S. von Luxburg"]},
         authors("Sanjeev von Luxburg", "Ruslan Deng", "Jia Cho", "Yoshua Abbeel"), YES),
    Case("and a surname alone needs none", {"authors": ["Luxburg"]},
         authors("Sanjeev von Luxburg", "Ruslan Deng", "Jia Cho", "Yoshua Abbeel"), YES),
    # --- organizations: the whole name -------------------------------------------------------
    Case("an organization, in any case", {"organizations": ["nvidia"]},
         {"organization": "NVIDIA"}, YES, (("nvidia", "organization", "NVIDIA"),)),
    Case("spaces don't matter", {"organizations": ["MetaLlama"]},
         {"organization": "Meta Llama"}, YES),
    Case("but part of the name is not the organization", {"organizations": ["Meta"]},
         {"organization": "Meta Llama"}, NO),
    # --- query: AND, OR, NOT, (), "phrases", *, and field prefixes ---------------------------
    Case("a field prefix and a quoted phrase with a wildcard", {"query": 'title:"linear transformer*"'},
         title("Parallelizing Linear Transformers with the Delta Rule over Sequence Length"), YES,
         (('title:"linear transformer*"', "title", "Linear Transformers"),)),
    Case("the prefix is a constraint", {"query": 'title:"linear transformer*"'},
         title("Universal Approximation Theorem for a Single-Layer Transformer",
               summary="Linear transformers aim to reduce the quadratic space-time complexity"), NO),
    Case("NOT excludes", {"query": "grokking NOT transformer*"},
         abstract("Previous studies have reported the occurrence of grokking in specific controlled settings, such as "
                  "DNNs initialized with large-norm parameters or transformers trained on algorithmic datasets."), NO),
    Case("NOT of an absent word holds", {"query": "grokking NOT survey"},
         abstract("Previous studies have reported the occurrence of grokking in specific controlled settings"), YES,
         (("grokking", "abstract", "grokking"),)),
    Case("author: and a group", {"query": "author:Sutskever (attention OR recurrent)"},
         authors("Xin Mohamed", "Ruslan Vapnik", "Vladimir Liu", "Ilya Sutskever", "Ruslan Hauberg",
                 summary="Transformers with linear attention allow for efficient parallel training"), YES,
         (("author:Sutskever", "authors", "Ilya Sutskever"), ("attention", "abstract", "attention"))),
    Case("org: and a word", {"query": "org:NVIDIA hallucination"},
         title("Neural Probe-Based Hallucination Detection for Large Language Models", organization="NVIDIA"), YES,
         (("org:NVIDIA", "organization", "NVIDIA"), ("hallucination", "title", "Hallucination"))),
    Case("lower-case and is a word to find", {"query": "wide and deep"},
         title("Wide and Deep Neural Networks Achieve Optimality for Classification"), YES),
    Case("so it must be there", {"query": "wide and deep"},
         title("Make Deep Networks Shallow Again"), NO),
    Case("query words follow the keyword rules", {"query": "pretraining OR finetuning"},
         abstract("like unsupervised pre-training, enjoys depth independent learning times."), YES,
         (("pretraining", "abstract", "pre-training"),)),
    Case("a query of only NOT matches papers without the word, with nothing to show", {"query": "NOT survey"},
         title("Make Deep Networks Shallow Again"), YES, ()),
    Case("a quoted query term is words, never a regular expression", {"query": '"re:train"'},
         abstract("the last few layers are fine-tuned (re-trained) over the target dataset."), NO),
    # --- structure: any positive part, and every constraint ----------------------------------
    Case("all: every term must be there too", {"keywords": ["linear attention"], "all": ["hardware"]},
         title("Gated Linear Attention Transformers with Hardware-Efficient Training"), YES,
         (("linear attention", "title", "Linear Attention"), ("hardware", "title", "Hardware"))),
    Case("all: one missing term fails the rule", {"keywords": ["linear attention"], "all": ["softmax"]},
         title("Gated Linear Attention Transformers with Hardware-Efficient Training"), NO),
    Case("all alone is not a reason to match", {"keywords": ["diffusion"], "all": ["hardware"]},
         title("Gated Linear Attention Transformers with Hardware-Efficient Training"), NO),
    Case("exclude: one excluded term fails the rule", {"keywords": ["grokking"], "exclude": ["transformer"]},
         abstract("Previous studies have reported the occurrence of grokking in specific controlled settings, such as "
                  "DNNs initialized with large-norm parameters or transformers trained on algorithmic datasets."), NO),
    Case("min_upvotes: fewer fail the rule", {"keywords": ["grokking"], "min_upvotes": 5},
         abstract("Grokking, or delayed generalization, is a phenomenon", upvotes=4), NO),
    Case("min_upvotes: as many pass", {"keywords": ["grokking"], "min_upvotes": 5},
         abstract("Grokking, or delayed generalization, is a phenomenon", upvotes=5), YES),
    Case("upvotes below zero (never read from the site) fail even a rule asking for none", {"keywords": ["grokking"]},
         abstract("Grokking, or delayed generalization, is a phenomenon", upvotes=-1), NO),
    Case("any positive part is enough: an author", {"keywords": ["diffusion"], "authors": ["Sutskever"]},
         authors("Oriol Sutskever", "Xin Peng", title="Parallelizing Linear Transformers with the Delta Rule over "
                                                      "Sequence Length"), YES,
         (("Sutskever", "authors", "Oriol Sutskever"),)),
    Case("or the query", {"keywords": ["diffusion"], "query": "grok*"},
         title("Deep Networks Always Grok and Here is Why"), YES, (("grok*", "title", "Grok"),)),
    Case("a query that fails adds nothing to the why", {"keywords": ["grokking"], "query": "delayed robustness"},
         abstract("Grokking, or delayed generalization, is a phenomenon"), YES,
         (("grokking", "abstract", "Grokking"),)),
]


def paper_of(case: Case) -> Paper:
    fields = {"title": "", **case.paper}
    fields["authors"] = tuple(fields.get("authors", ()))
    fields["ai_keywords"] = tuple(fields.get("ai_keywords", ()))
    return Paper(id="2503.00001", **fields)


def spec_of(case: Case, *, name: str = "rule") -> RuleSpec:
    rule = {key: tuple(value) if isinstance(value, list) else value for key, value in case.rule.items()}
    return RuleSpec(reader="alice", name=name, **rule)


@pytest.mark.parametrize("case", CASES, ids=[case.what for case in CASES])
def test_rule_semantics(case: Case) -> None:
    """Each row: the rule matches the paper or not as stated, and the why shows what matched, where."""
    found = Matcher.compile([spec_of(case)]).match(paper_of(case))
    assert bool(found) is case.matches, found
    if found and case.why is not None:
        assert [(hit.term, hit.field, hit.text) for hit in found[0].why] == list(case.why)


def test_the_table_is_large_and_balanced() -> None:
    """At least 60 rows, and plenty of both outcomes: a table of only matches proves little."""
    assert len(CASES) >= 60
    assert sum(case.matches for case in CASES) >= 25 and sum(not case.matches for case in CASES) >= 25


def sample_papers() -> list[dict[str, Any]]:
    return [item["paper"] for name in ("api-daily_papers-2025-03-05.json", "api-papers-search-q-deep-networks.json")
            for item in json.loads((SAMPLES / name).read_text(encoding="utf-8"))]


def test_the_tables_texts_are_real() -> None:
    """Every title, abstract excerpt, author, organization and AI keyword of an unedited row is in the samples."""
    papers = sample_papers()
    texts = [" ".join(f"{p['title']} {p['summary']}".split()) for p in papers]
    names = {author["name"] for p in papers for author in p["authors"]}
    organizations = {(p.get("organization") or {}).get("fullname") for p in papers}
    ai_keywords = {keyword for p in papers for keyword in p.get("ai_keywords") or ()}
    for case in CASES:
        if case.edited:
            continue
        for key in ("title", "summary"):
            if key in case.paper:
                assert any(case.paper[key] in text for text in texts), (case.what, case.paper[key])
        assert set(case.paper.get("authors", ())) <= names, case.what
        assert set(case.paper.get("ai_keywords", ())) <= ai_keywords, case.what
        assert case.paper.get("organization") in organizations | {None}, case.what


# --- several rules, one match ---------------------------------------------------------------


def real_paper(paper_id: str) -> Paper:
    """A paper of the samples, as the parser would store it."""
    item = next(p for p in sample_papers() if p["id"] == paper_id)
    return Paper(id=item["id"], title=item["title"], summary=" ".join(item["summary"].split()),
                 authors=tuple(a["name"] for a in item["authors"]),
                 organization=(item.get("organization") or {}).get("fullname"),
                 ai_keywords=tuple(item.get("ai_keywords") or ()), upvotes=item.get("upvotes"))


def test_a_paper_several_rules_match_is_one_match_listing_every_rule() -> None:
    """One Match per reader: every rule of hers that matched, in her order, with each rule's hits."""
    matcher = Matcher.compile([
        RuleSpec("alice", "grokking", keywords=("grokking",)),
        RuleSpec("alice", "diffusion", keywords=("diffusion",)),
        RuleSpec("alice", "deep nets", query='title:"deep network*"'),
        RuleSpec("bob", "robustness", keywords=("delayed robustness",)),
        RuleSpec("alice", "people", authors=("T. LeCun", "Yann LeCun")),
    ])
    found = matcher.match(real_paper("2402.13013"))
    assert [(m.reader, m.paper_id, m.rules) for m in found] == [
        ("alice", "2402.13013", ("grokking", "deep nets", "people")),
        ("bob", "2402.13013", ("robustness",)),
    ]
    assert found[0].why == (
        Hit("grokking", "grokking", "abstract", "Grokking"),
        Hit("deep nets", 'title:"deep network*"', "title", "Deep Networks"),
        Hit("people", "T. LeCun", "authors", "Tomáš LeCun"),
    )


def test_a_term_two_rules_share_is_a_hit_of_each() -> None:
    """The why says which rule each word served, even when two rules ask for the same word."""
    matcher = Matcher.compile([RuleSpec("alice", "one", keywords=("grokking",)),
                               RuleSpec("alice", "two", keywords=("Grokking",), fields=("title", "abstract"))])
    (found,) = matcher.match(real_paper("2402.13013"))
    assert [(h.rule, h.term, h.field) for h in found.why] == [("one", "grokking", "abstract"),
                                                              ("two", "Grokking", "abstract")]


def test_why_carries_rule_term_field_and_the_papers_own_text() -> None:
    """A hit names the rule, the term as the rule wrote it, the field, and the paper's words at their first
    occurrence in that field, in the paper's own spelling; ``as_json`` is the match --json shape."""
    matcher = Matcher.compile([RuleSpec("alice", "linear", keywords=("linear transform*", "re:delta rule"),
                                        authors=("Oriol Sutskever",), organizations=("meta llama",))])
    (found,) = matcher.match(real_paper("2503.63197"))
    assert found.why == (
        Hit("linear", "linear transform*", "title", "Linear Transformers"),
        Hit("linear", "linear transform*", "abstract", "linear transformers"),
        Hit("linear", "re:delta rule", "title", "Delta Rule"),
        Hit("linear", "re:delta rule", "abstract", "delta rule"),
        Hit("linear", "Oriol Sutskever", "authors", "Oriol Sutskever"),
        Hit("linear", "meta llama", "organization", "Meta Llama"),
    )
    assert found.as_json() == {
        "reader": "alice", "paper": "2503.63197", "rules": ["linear"],
        "why": [{"rule": h.rule, "field": h.field, "term": h.term, "text": h.text} for h in found.why],
    }


# --- mistakes -------------------------------------------------------------------------------


def test_every_mistake_is_named_once_with_its_key() -> None:
    """Each mistake in any rule is one line naming reader, rule, key and item, and what to do."""
    rules = [
        RuleSpec("bob", "regexes", keywords=("re:(unclosed", r"re:\b", "re:x*", "re:a{99999999999}",
                                             "re:" + "(" * 2000 + "a" + ")" * 2000)),
        RuleSpec("bob", "empty", all=("survey",), exclude=("review",)),
        RuleSpec("bob", "fields", keywords=("grokking",), fields=("titel", "abstract", "pdf")),
        RuleSpec("bob", "query", query="grokking AND (title:deep"),
        RuleSpec("bob", "query star", query="title:deep net*work"),
        RuleSpec("bob", "stars", keywords=("diffus*ion", "*former", "d*", "**", "pre-train*"), all=("x* y",)),
        RuleSpec("bob", "words", keywords=("", "  ", "--", "a b c d e f g h i")),
        RuleSpec("bob", "people", authors=("LeCun, Yann", "LeC*", ".", "Yann LeCun"), organizations=("*", "Mila")),
        RuleSpec("bob", "upvotes", keywords=("grokking",), min_upvotes=-1),
        RuleSpec("bob", "upvotes", keywords=("grokking",)),
    ]
    where = "readers.bob.rules"
    assert [str(problem) for problem in rule_problems(rules)] == [
        f"{where}.regexes.keywords[0]: invalid regular expression '(unclosed': missing ), unterminated subpattern "
        "at position 0",
        f"{where}.regexes.keywords[1]: regular expression '\\\\b' matches empty text, so it would match every paper",
        f"{where}.regexes.keywords[2]: regular expression 'x*' matches empty text, so it would match every paper",
        f"{where}.regexes.keywords[3]: invalid regular expression 'a{{99999999999}}': the repetition number is too "
        "large",
        f"{where}.regexes.keywords[4]: invalid regular expression '((((((((((((((((((((((((((((((...': "
        "groups nested too deeply",
        f"{where}.empty: empty rule: give keywords, authors, organizations or a query",
        f"{where}.fields.fields[0]: unknown field 'titel', did you mean title?",
        f"{where}.fields.fields[2]: unknown field 'pdf' (known: title, abstract, ai_keywords, authors, organization)",
        f"{where}.query.query: '(' is never closed at position 13",
        f"{where}.query star.query: 'net*work': '*' may only end a word, as in diffus* at position 11",
        f"{where}.stars.keywords[0]: 'diffus*ion': '*' may only end a word, as in diffus*",
        f"{where}.stars.keywords[1]: '*former': '*' may only end a word, as in diffus*",
        f"{where}.stars.keywords[2]: 'd*': give at least two letters before '*'",
        f"{where}.stars.keywords[3]: '**': '*' may only end a word, as in diffus*",
        f"{where}.stars.all[0]: 'x* y': give at least two letters before '*'",
        f"{where}.words.keywords[0]: '' has no words to match",
        f"{where}.words.keywords[1]: '  ' has no words to match",
        f"{where}.words.keywords[2]: '--' has no words to match",
        f"{where}.words.keywords[3]: 'a b c d e f g h i' has more than 8 words",
        f"{where}.people.authors[0]: 'LeCun, Yann': give one author per entry, given names first, as in 'Yann LeCun'",
        f"{where}.people.authors[1]: 'LeC*': '*' is not supported in names: give the whole surname",
        f"{where}.people.authors[2]: '.' is not a name",
        f"{where}.people.organizations[0]: '*': '*' is not supported in names: give the whole name",
        f"{where}.upvotes.min_upvotes: must be at least 0, got -1",
        f"{where}.upvotes: two rules of one reader have this name",
    ]


def test_a_valid_regex_python_warns_about_is_accepted_quietly() -> None:
    """``[[a]`` is valid (Python only warns that its meaning may change): no warning escapes the compiler."""
    matcher = Matcher.compile([RuleSpec("bob", "odd", keywords=("re:[[]a]",))])  # warnings are errors here
    assert matcher.match(Paper(id="2503.00001", title="[a] and [[a]")) != []


def test_compile_raises_one_config_error_with_every_problem() -> None:
    """Matcher.compile refuses the whole set of rules with the same lines rule_problems gives."""
    rules = [RuleSpec("bob", "a", keywords=("re:(",)), RuleSpec("carol", "b", fields=("titel",), keywords=("x",))]
    with pytest.raises(ConfigError) as caught:
        Matcher.compile(rules)
    assert caught.value.problems == [str(problem) for problem in rule_problems(rules)]
    assert len(caught.value.problems) == 2


# --- compiled once, used many times ------------------------------------------------------------


def every_sample() -> list[Paper]:
    return [real_paper(item["id"]) for item in sample_papers()]


READING_LIST = [
    RuleSpec("alice", "linear", keywords=("linear transform*", "linear attention"), exclude=("survey",)),
    RuleSpec("alice", "grokking", query='grok* OR "delayed generalization"'),
    RuleSpec("alice", "people", authors=("Y. Bengio", "Léon Hauberg", "Luxburg")),
    RuleSpec("bob", "deep nets", query='title:"deep network*" NOT abstract:transformer*'),
    RuleSpec("bob", "training", keywords=("pretraining", "fine-tun*", r"re:\bcifar-?\d+"), min_upvotes=0),
    RuleSpec("bob", "labs", organizations=("NVIDIA",), all=("network",)),
]


def test_a_matcher_is_compiled_once_and_reused_for_every_paper(monkeypatch: pytest.MonkeyPatch) -> None:
    """A matcher compiles its rules once (what it evaluates them with, when first used): then, with
    the compiler, re.compile, the query parser and eval disabled, it gives the results of a fresh
    one, paper after paper, over and over."""
    papers = every_sample()
    expected = [Matcher.compile(READING_LIST).match(paper) for paper in papers]
    expected_json = Matcher.compile(READING_LIST).encoded(papers)
    matcher = Matcher.compile(READING_LIST)
    assert matcher.match(papers[0]) == expected[0]

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled while matching")

    monkeypatch.setattr(match, "Builder", forbidden)
    monkeypatch.setattr(re, "compile", forbidden)
    monkeypatch.setattr(query, "parse", forbidden)
    monkeypatch.setattr(builtins, "eval", forbidden)
    for _ in range(20):
        assert [matcher.match(paper) for paper in papers] == expected
        assert matcher.encoded(papers) == expected_json
    assert sum(map(len, expected)) >= 20  # the rules do match: the comparison means something


def test_forgetting_the_vocabulary_midway_loses_no_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """The matcher's memory of words seen is bounded; clearing it, even in the middle of a paper, changes
    no result."""
    papers = every_sample()
    expected = Matcher.compile(READING_LIST).match_all(papers)
    for limit in (1, 10, 100, 1000):
        monkeypatch.setattr(scan, "MEMO_LIMIT", limit)
        assert Matcher.compile(READING_LIST).match_all(papers * 2) == expected * 2


# --- properties -------------------------------------------------------------------------------

# Text that mostly looks like what a rule holds, with plenty of the characters that mean something.
RULE_TEXT = st.lists(
    st.sampled_from(["re:", "*", '"', "(", ")", "[", "]", "{", "}", "\\", "|", "?", "+", "-", ".", ",", " ",
                     ":", "'", "AND", "OR", "NOT", "title:", "author:", "deep", "net", "von", "Y.", "é", "ﬁ",
                     "\u00ad", "\u2010", "0", "9"]) | st.text(max_size=4),
    max_size=12,
).map("".join)
# Regular expressions too, with the constructs the re module refuses in other ways than re.error.
RULE_TEXTS = st.lists(RULE_TEXT | st.tuples(st.sampled_from(["re:", "re:[[", "re:a{99999999999}"]), RULE_TEXT).map(
    "".join), max_size=3).map(tuple)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keywords=RULE_TEXTS, all_=RULE_TEXTS, exclude=RULE_TEXTS, authors=RULE_TEXTS, organizations=RULE_TEXTS,
       fields=st.lists(st.sampled_from(match.FIELDS) | RULE_TEXT, max_size=2).map(tuple),
       query=st.none() | RULE_TEXT)
@pytest.mark.slow
def test_the_rule_compiler_raises_nothing_but_config_error(
        keywords: tuple[str, ...], all_: tuple[str, ...], exclude: tuple[str, ...], authors: tuple[str, ...],
        organizations: tuple[str, ...], fields: tuple[str, ...], query: str | None) -> None:
    """Whatever a rule holds, it compiles or is refused with ConfigError; a compiled rule can match."""
    spec = RuleSpec("alice", "any", keywords=keywords, all=all_, exclude=exclude, authors=authors,
                    organizations=organizations, fields=fields, query=query)
    try:
        matcher = Matcher.compile([spec])
    except ConfigError as exc:
        assert exc.problems and all(line.startswith("readers.alice.rules.any") for line in exc.problems)
    else:
        matcher.match(PROBE_PAPER)


PROBE_PAPER = Paper(id="2503.00001", title="Deep Networks Always Grok (and Here is Why)",
                    summary="Pre-training, ﬁne-tuning: a naïve net-work [0-9]; \\ deep|net? (von) Y. é.",
                    authors=("Yoshua von Luxburg", "Y. Bengio", "Léon Cho"), organization="Meta Llama",
                    ai_keywords=("deep", "net*"))

# Regular expressions built from literal runs and every construct that bounds or repeats them.
REGEX = st.lists(
    st.sampled_from(["ab", "a", "b", "ba", "-", " ", "0", "12", r"\d", r"\w", r"\b", r"\x61", r"\u0062", r"\141",
                     r"\N{LATIN SMALL LETTER A}", "[ab]", "[^a]", "(ab)", "(?:b|a)", "(?=a)", "(?i:B)", "(a)\\1", ".",
                     "|", "*", "+", "?", "*?", "+?", "{2}", "{1,3}", "{,2}", "{2,}", "{}", "{a}"]),
    min_size=1, max_size=8,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(pattern=REGEX, data=st.data())
@pytest.mark.slow
def test_a_regexs_required_text_is_in_every_text_it_matches(pattern: str, data: st.DataObject) -> None:
    """The prefilter never rejects a text the regular expression would match."""
    try:
        compiled = re.compile(pattern)
    except re.error:
        return
    text = data.draw(st.from_regex(compiled) | st.text(alphabet="ab -12{}", max_size=12), label="text")
    if compiled.search(text):
        assert required_text(compiled) in text


def test_required_text_finds_the_literal_a_regex_needs() -> None:
    """Where a literal run is certain, the prefilter uses the longest one."""
    assert required_text(re.compile(r"\bdelta rule\b")) == "delta rule"
    assert required_text(re.compile(r"\bcifar-?\d+")) == "cifar"
    assert required_text(re.compile(r"(?:grok|grokking) \d{4} years")) == " years"
    assert required_text(re.compile("deep|shallow")) == ""


def test_the_whole_table_compiled_as_one_rule_set_gives_every_rows_answer() -> None:
    """Rules compiled together share their words and never disturb each other: one matcher holding
    every row's rule matches each row's paper with exactly the rules whose rows say so."""
    matcher = Matcher.compile([spec_of(case, name=f"row {n}") for n, case in enumerate(CASES)])
    for n, case in enumerate(CASES):
        found = [rule for m in matcher.match(paper_of(case)) for rule in m.rules]
        assert (f"row {n}" in found) is case.matches, case.what


def test_matching_for_one_reader_and_a_paper_whose_text_changed() -> None:
    """``match(paper, reader=...)`` gives that reader's match only; a paper seen again with a new
    abstract (a cards-only fetch completed later) is matched on its new text, not the remembered one."""
    matcher = Matcher.compile([RuleSpec(reader="alice", name="grok", keywords=("grokking",)),
                               RuleSpec(reader="bob", name="grok too", keywords=("grokking",)),
                               RuleSpec(reader="bob", name="collapse", keywords=("neural collapse",))])
    bare = Paper(id="2503.00001", title="A Study")
    assert matcher.match(bare) == []
    full = Paper(id="2503.00001", title="A Study", summary="We find grokking and neural collapse.")
    assert [m.reader for m in matcher.match(full)] == ["alice", "bob"]
    [only] = matcher.match(full, reader="bob")
    assert only.reader == "bob" and only.rules == ("grok too", "collapse")
    assert matcher.match(full, reader="carol") == []


@pytest.mark.timeout(20)
def test_a_pattern_that_backtracks_elsewhere_searches_in_linear_time() -> None:
    """``(a+)+$`` on 60 a's and a ``!``: 2**60 steps for a backtracking engine, one pass here."""
    matcher = Matcher.compile([RuleSpec("bob", "runs", keywords=("re:(a+)+$",))])
    assert matcher.match(Paper(id="2503.00001", title="a" * 60 + "!")) == []
    assert matcher.match(Paper(id="2503.00002", title="a" * 60)) != []


def test_one_readers_rules_compiled_alone_match_as_they_do_among_everyones() -> None:
    """``match --reader`` compiles that reader's rules alone: the same matches, hits and texts."""
    papers = every_sample()
    everyone = Matcher.compile(READING_LIST)
    for reader in ("alice", "bob"):
        alone = Matcher.compile([spec for spec in READING_LIST if spec.reader == reader])
        expected = [m for paper in papers for m in everyone.match(paper) if m.reader == reader]
        assert alone.match_all(papers) == expected
        assert expected  # each reader does have matches


@pytest.mark.parametrize("others", [(), ("grokking dynamics",), ("Grokking",), ("grokking-free", "re:grok")])
def test_a_word_found_again_is_explained_by_its_first_occurrence_whatever_else_is_looked_for(
        others: tuple[str, ...]) -> None:
    """Whether or not other terms start with the same word, a hit shows the first place it occurs."""
    rules = [RuleSpec("alice", "grok", keywords=("grokking",))]
    rules += [RuleSpec("bob", f"other {n}", keywords=(other,)) for n, other in enumerate(others)]
    paper = Paper(id="2503.00001", title="Grokking, again", summary="Why grokking? GROKKING dynamics and grokking.")
    [found] = [m for m in Matcher.compile(rules).match(paper) if m.reader == "alice"]
    assert found.why == (Hit("grok", "grokking", "title", "Grokking"), Hit("grok", "grokking", "abstract", "grokking"))


_VOCAB = ["pre", "training", "pretraining", "diffusion", "model", "non", "linear", "nonlinear", "state", "space",
          "naïve", "ﬁne", "tuning", "x", "art"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(_VOCAB), min_size=1, max_size=12),
       gaps=st.lists(st.sampled_from([" ", "-", "—", ", ", ". ", "(", "_", "'"]), min_size=12, max_size=12),
       terms=st.lists(st.sampled_from(["pretraining", "pre-training", "diffus*", "state space model", "nonlinear",
                                       "non linear", "naive", "fine-tuning", "art", "linear*", "x"]),
                      min_size=1, max_size=4))
def test_skipping_fields_without_a_first_word_changes_no_result(
        words: list[str], gaps: list[str], terms: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The Aho-Corasick pass only skips fields the trie walk would find nothing in."""
    text = "".join(word + gap for word, gap in zip(words, gaps))
    paper = Paper(id="2503.00001", title=text, summary=text.upper())
    rules = [RuleSpec("alice", f"r{n}", keywords=(term,)) for n, term in enumerate(terms)]
    filtered = Matcher.compile(rules).match(paper)
    with monkeypatch.context() as patch:
        patch.setattr(scan, "leaf_hits", lambda automaton, folded: None)
        assert Matcher.compile(rules).match(paper) == filtered


def test_a_rule_problem_says_where_it_is_without_being_read() -> None:
    """The config finds a mistake in the file from the problem's fields, never by parsing its text:
    a rule named like a key path (``a.b:c``) is found all the same."""
    rules = [RuleSpec("bob", "a.b:c", keywords=("ok", "re:(")), RuleSpec("bob", "q", query="x AND (")]
    with pytest.raises(RuleError) as caught:
        Matcher.compile(rules)
    assert [(p.reader, p.rule, p.key) for p in caught.value.rules] == [("bob", "a.b:c", ("keywords", 1)),
                                                                       ("bob", "q", ("query",))]
    assert caught.value.problems[0].startswith("readers.bob.rules.a.b:c.keywords[1]: invalid regular expression")


def _as_json_lines(matcher: Matcher, papers: list[Paper], readers: set[str] | None = None) -> dict[str, list[str]]:
    """What ``match --json`` wrote before its fast path: each Match's as_json with the title, encoded."""
    encode = json.JSONEncoder(ensure_ascii=False).encode
    titles = {p.id: p.title for p in papers}
    lines: dict[str, list[str]] = {}
    for m in matcher.match_all(papers):
        if readers is None or m.reader in readers:
            lines.setdefault(m.reader, []).append(encode({**m.as_json(), "title": titles.get(m.paper_id)}))
    return lines


def test_encoded_matches_are_the_json_of_every_match_byte_for_byte() -> None:
    """``Matcher.encoded`` (what ``match --json`` writes) says what ``Match.as_json`` says, in the same
    bytes and order: every row of the table as one rule set, and a reading list over the samples."""
    rows = Matcher.compile([RuleSpec(f"reader {n % 7}", f"row “{n}”", **{
        key: tuple(value) if isinstance(value, list) else value for key, value in case.rule.items()})
        for n, case in enumerate(CASES)])
    papers = [dataclasses.replace(paper_of(case), id=f"2503.{n:05d}", title=f"{paper_of(case).title} ∂\"\\")
              for n, case in enumerate(CASES)]
    for matcher, some in ((rows, papers), (Matcher.compile(READING_LIST), every_sample())):
        expected = _as_json_lines(matcher, some)
        assert matcher.encoded(some) == expected and expected
        assert all(json.loads(line)["why"] is not None for lines in expected.values() for line in lines)
    assert rows.encoded(papers, {"reader 3"}) == _as_json_lines(rows, papers, {"reader 3"}) != {}


def test_readers_come_in_the_order_of_their_first_rules_each_with_its_rules_in_order() -> None:
    """Rules of readers written in turns: each reader's matches list its rules in order, and the
    readers come in the order their first rules do, whichever rules match."""
    rules = [RuleSpec("ann", "first", keywords=("absent",)), RuleSpec("bo", "only", keywords=("grokking",)),
             RuleSpec("ann", "second", keywords=("grokking",)), RuleSpec("ann", "third", keywords=("phenomenon",))]
    paper = Paper(id="2503.00001", title="Grokking", summary="Grokking is a phenomenon")
    matcher = Matcher.compile(rules)
    assert [(m.reader, m.rules) for m in matcher.match(paper)] == [("ann", ("second", "third")), ("bo", ("only",))]
    assert list(matcher.encoded([paper])) == ["ann", "bo"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(_VOCAB), min_size=1, max_size=16),
       gaps=st.lists(st.sampled_from([" ", "-", " ", ", ", "_"]), min_size=16, max_size=16),
       terms=st.lists(st.sampled_from(["pre training", "pretraining", "diffus* model", "state space model",
                                       "non linear", "linear state", "model", "x art", "state", "tuning x",
                                       "linear*", "fine-tuning"]), min_size=1, max_size=5))
@example(words=["linear", "model", "linear", "state", "x", "fine", "tuning", "x", "art"],
         gaps=[" ", ", ", " ", " ", " ", "-", " ", " ", " "] + [" "] * 7, terms=["linear state", "tuning x", "x art"])
def test_following_only_occurrences_that_can_go_on_changes_no_hit(
        words: list[str], gaps: list[str], terms: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A phrase's first word is followed from its first occurrence and from those a next word can
    continue: the same matches and the same texts as following every occurrence."""
    text = "".join(word + gap for word, gap in zip(words, gaps))
    paper = Paper(id="2503.00001", title=text, summary=f"{text} {text}")
    rules = [RuleSpec("alice", f"r{n}", keywords=(term,)) for n, term in enumerate(terms)]
    chosen = Matcher.compile(rules).match(paper)
    with monkeypatch.context() as patch:
        patch.setattr(scan.Scanner, "_going_on",
                      lambda self, tokens, joins: [i for i, token in enumerate(tokens) if token in self._inner])
        assert Matcher.compile(rules).match(paper) == chosen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(words=["Naïve", "model", "boxes", "box", "ﬁne"], gaps=[" ", ". ", "_", ", "] + [" "] * 8,
         terms=["box", "naive", "fine", "model"])
@example(words=["pre", "box", "model", "non", "linear", "box"], gaps=["--", "-", " ", "-", "-"] + [" "] * 7,
         terms=["box", "boxmodel", "linear"])
@example(words=["state", "model", "state", "space"], gaps=[" "] * 12, terms=["state space", "model"])
@example(words=["x", "art", "x", "pre", "training"], gaps=[", ", " ", " ", "-"] + [" "] * 8,
         terms=["x pretraining", "art"])
@given(words=st.lists(st.sampled_from([*_VOCAB, "Naïve", "MODEL", "models", "box", "boxes", "Spaces", "ﬁnes"]),
                      min_size=1, max_size=12),
       gaps=st.lists(st.sampled_from([" ", ", ", ". ", "(", "_", "'", "/", "", "—", "-", "--", " -"]),
                     min_size=12, max_size=12),
       terms=st.lists(st.sampled_from(["box", "model", "naive", "fine", "space", "state space", "model*", "x",
                                       "linear", "pre-training", "art", "boxmodel", "nonlinear"]),
                      min_size=1, max_size=4))
def test_a_field_holding_only_single_word_terms_is_explained_as_by_the_walk(
        words: list[str], gaps: list[str], terms: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A field whose only hits are words that start no phrase is read from the Aho-Corasick pass
    alone: the same matches, fields and original texts as tokenizing and walking it."""
    text = "".join(word + gap for word, gap in zip(words, gaps))
    paper = Paper(id="2503.00001", title=text, summary=f"{text} {text.upper()}", ai_keywords=tuple(words))
    rules = [RuleSpec("alice", f"r{n}", keywords=(term,)) for n, term in enumerate(terms)]
    quick = Matcher.compile(rules).match(paper)
    with monkeypatch.context() as patch:
        patch.setattr(scan, "leaf_hits", lambda automaton, folded: None)
        assert Matcher.compile(rules).match(paper) == quick


# The tokens of the README's rules: runs of letters and digits, single hyphens joining them into
# a hyphenated run, a clause end before a space and a bracket being breaks ("" here).
_RUN_OR_BREAK = re.compile(r"([^\W_]+(?:-[^\W_]+)*)|[.,;:!?](?=\s|$)|[()\[\]{}]")
_PIECE_OR_BREAK = re.compile(r"([^\W_]+|[.,;:!?](?=\s|$)|[()\[\]{}])")


@settings(max_examples=500, deadline=None)
@example(text="Pre-training--fine-tuning (a-b-c). X-")
@example(text="a - b -c d- e—f ‐g")
@given(text=st.text(alphabet="aB1 -—.,;:!?()[]{}_'/\t\n\x0b\x1c\x00é", max_size=24))
def test_the_byte_tokenizer_reads_text_as_the_regular_expressions_define_it(text: str) -> None:
    """ASCII text is tokenized by byte translations: the same tokens, hyphen joins and hit texts as
    the regular expressions that define them."""
    field = tokens.Text(text)
    field.tokenize(lambda words: True)
    items = _RUN_OR_BREAK.findall(field.folded)
    expected = " ".join(items).replace("-", " ").split(" ") if items else []
    assert [token if token != "|" else "" for token in field.tokens] == expected
    assert field.joins == (tokens._joins(items, lambda words: True) if "-" in field.folded else {})
    ends = list(itertools.accumulate(map(len, _PIECE_OR_BREAK.split(field.folded))))
    for first, token in enumerate(expected):
        for last in range(first, len(expected)):
            if not all(expected[first : last + 1]):
                break
            assert field.words(first, last) == field.chars(ends[2 * first], ends[2 * last + 1])
        if token and token not in expected[:first]:
            assert field.first(token) == field.chars(ends[2 * first], ends[2 * first + 1])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from([*_VOCAB, "deep", "learning"]), min_size=1, max_size=12),
       gaps=st.lists(st.sampled_from([" ", "-", "--", " - ", ", ", "—"]), min_size=12, max_size=12),
       terms=st.lists(st.sampled_from(["pretraining", "pre training", "deeplearning*", "nonlinear state", "x art",
                                       "state spacemodel", "finetuning", "linear", "deep learning"]),
                      min_size=1, max_size=4))
def test_leaving_out_joins_no_term_can_use_changes_no_hit(
        words: list[str], gaps: list[str], terms: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A field's hyphen joins are worked out only if one of its joined words may be part of a term:
    the same matches and texts as working them out always."""
    text = "".join(word + gap for word, gap in zip(words, gaps))
    paper = Paper(id="2503.00001", title=text, summary=f"{text} {text}")
    rules = [RuleSpec("alice", f"r{n}", keywords=(term,)) for n, term in enumerate(terms)]
    chosen = Matcher.compile(rules).match(paper)
    with monkeypatch.context() as patch:
        patch.setattr(scan.Scanner, "_joinable", lambda self, words: True)
        assert Matcher.compile(rules).match(paper) == chosen


@settings(max_examples=300, deadline=None)
@example(text="a-bb-c--dd-e f-gg. h-i-j-k-l-m-n-o-p-q")
@given(text=st.text(alphabet="aB1 -—.,;:!?()_'\t", max_size=30))
def test_the_byte_tokenizer_keeps_the_joined_words_the_regular_expressions_keep(text: str) -> None:
    """Joined words a term cannot use are left out alike by the byte tokenizer and ``_joins``."""
    def joinable(word: str) -> bool:
        return len(word) % 2 == 0

    field = tokens.Text(text)
    field.tokenize(joinable)
    items = _RUN_OR_BREAK.findall(field.folded)
    assert field.joins == (tokens._joins(items, joinable) if "-" in field.folded else {})
    assert all(map(joinable, (joined for words in field.joins.values() for joined, _ in words)))


class _Everything:
    def __contains__(self, item: object) -> bool:
        return True


_NAME_PARTS = ["Ludwig", "van", "Beethoven", "vanbeethoven", "O'Brien", "Y.LeCun", "Y.", "de", "la", "Cruz", "Smith-Jones",
               "José", "LI", "Wei", "Jr.", "obrien", "brien", "von", "Ng", "Ång"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(authors=st.lists(st.lists(st.sampled_from(_NAME_PARTS), max_size=4).map(" ".join), min_size=1, max_size=4),
       wanted=st.lists(st.lists(st.sampled_from(_NAME_PARTS), min_size=1, max_size=3).map(" ".join),
                       min_size=1, max_size=3))
def test_authors_whose_last_word_ends_no_surname_are_not_read_and_no_hit_is_lost(
        authors: list[str], wanted: list[str]) -> None:
    """An author is read only if the last word of the name ends a surname looked for: the same
    matches as reading every author."""
    paper = Paper(id="2503.00001", title="t", authors=tuple(authors))
    rules = [RuleSpec("alice", "people", authors=tuple(wanted))]
    quick = Matcher.compile(rules)
    every = Matcher.compile(rules)
    every._rules().scanner._surname_ends = _Everything()  # type: ignore[assignment]
    assert quick.match(paper) == every.match(paper)
