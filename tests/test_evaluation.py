"""Chapter 05's scorers: bits per character against hand-computed cases, and KoBEST on fixtures."""

import math
from types import SimpleNamespace

import pytest
import torch

from eeve_lib.method.evaluation import _window_plan, score_texts
from eeve_lib.method.kobest import TASKS, MultipleChoice, encode_pair, macro_f1, score_task, to_examples


class CharTokenizer:
    """One token per character of a tiny alphabet; id 0 is the end-of-text token."""

    alphabet = "#abcdefgh 가나다"
    eos_token_id = 0

    def __len__(self):
        return len(self.alphabet)

    @property
    def backend_tokenizer(self):
        return self

    def encode_batch(self, texts, add_special_tokens=False):
        return [SimpleNamespace(ids=[self.alphabet.index(c) for c in t]) for t in texts]

    def __call__(self, text, add_special_tokens=False):
        return SimpleNamespace(input_ids=[self.alphabet.index(c) for c in text])


class UniformModel(torch.nn.Module):
    """Every next token equally likely: each token costs exactly log(V) nats."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab))


class ContextLengthModel(torch.nn.Module):
    """Puts probability 1/2 on token id (visible context length mod V) and spreads the rest evenly.

    The score of each token therefore reveals how much context the sliding window gave it.
    """

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        b, t = input_ids.shape
        probs = torch.full((b, t, self.vocab), 0.5 / (self.vocab - 1))
        for pos in range(t):
            probs[:, pos, (pos + 1) % self.vocab] = 0.5
        return SimpleNamespace(logits=probs.log())


def test_uniform_model_by_hand():
    tok = CharTokenizer()
    texts = ["abc가나", "h다 a"]
    score = score_texts(UniformModel(len(tok)), tok, texts, window=4, stride=2)
    tokens = sum(len(t) for t in texts)
    assert score.tokens == tokens and score.characters == tokens
    assert score.bits_per_character == pytest.approx(math.log2(len(tok)))
    assert score.bits_per_byte == pytest.approx(tokens * math.log2(len(tok)) / sum(len(t.encode()) for t in texts))


def test_sliding_window_scores_each_token_once_with_the_right_context():
    tok = CharTokenizer()
    text = "abcdefgh"  # with the end-of-text token: positions 0..8
    window, stride = 4, 2
    # By hand: windows [0,4) scores positions 1-3 with context 1-3; [2,6) scores 4-5 with context 3-4;
    # [4,8) scores 6-7 with context 3-4; [6,9) scores 8 with context 3.
    assert _window_plan(9, window, stride) == [(0, 4, 1), (2, 6, 4), (4, 8, 6), (6, 9, 8)]
    contexts = {1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 3, 7: 4, 8: 3}
    ids = [0] + [tok.alphabet.index(c) for c in text]
    v = len(tok)
    expected = 0.0
    for position, context in contexts.items():
        favourite = context % v  # the model favours id (context length) at window position context-1
        expected -= math.log(0.5 if ids[position] == favourite else 0.5 / (v - 1))
    score = score_texts(ContextLengthModel(v), tok, [text], window=window, stride=stride)
    assert score.tokens == 8
    assert score.nats == pytest.approx(expected, rel=1e-6)


def test_padding_logits_do_not_enter_the_softmax():
    tok = CharTokenizer()
    model = UniformModel(len(tok) + 10)  # ten padding rows
    score = score_texts(model, tok, ["abc"], window=8, stride=4)
    assert score.bits_per_character == pytest.approx(math.log2(len(tok)))


FIXTURES = {
    "boolq": [{"paragraph": "하늘은 파랗다.", "question": "하늘은 파란가?", "label": 1}],
    "copa": [{"premise": "비가 왔다.", "question": "결과", "alternative_1": "우산을 썼다.", "alternative_2": "춤을 췄다.", "label": 0}],
    "hellaswag": [{"context": "그는 문을 열고", "ending_1": "나갔다.", "ending_2": "먹었다.", "ending_3": "잤다.",
                   "ending_4": "울었다.", "label": 0}],
    "sentineg": [{"sentence": "정말 좋다", "label": 1}],
    "wic": [{"word": "배", "context_1": "배가 고프다.", "context_2": "배를 탔다.", "label": 0}],
}


class BigramModel(torch.nn.Module):
    """After token a, strongly predicts table[a]: it 'knows' one continuation and nothing else."""

    def __init__(self, vocab, table):
        super().__init__()
        self.vocab, self.table = vocab, table
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for b in range(input_ids.shape[0]):
            for t, token in enumerate(input_ids[b].tolist()):
                if token in self.table:
                    logits[b, t, self.table[token]] = 10.0
        return SimpleNamespace(logits=logits)


class SyllableTokenizer:
    """One id per character, over the characters of the fixtures."""

    eos_token_id = 0

    def __init__(self):
        chars = sorted({c for rows in FIXTURES.values() for r in rows for v in r.values() if isinstance(v, str)
                        for c in v} | set(" 아니오예부정긍왜냐하면그래서질문답변:\n문장12두에서가같은뜻으로쓰였나?"))
        self.index = {c: i + 1 for i, c in enumerate(chars)}

    def __len__(self):
        return len(self.index) + 1

    def __call__(self, text, add_special_tokens=False):
        return SimpleNamespace(input_ids=[self.index[c] for c in text])


@pytest.mark.parametrize("task", TASKS)
def test_kobest_formats_and_scorer(task):
    examples = to_examples(task, FIXTURES[task])
    assert len(examples) == 1 and all(isinstance(e, MultipleChoice) for e in examples)
    tok = SyllableTokenizer()
    example = examples[0]
    for answer in range(len(example.choices)):
        # A model that knows the continuation `answer` (a bigram chain through it) must pick it.
        context, continuation = encode_pair(tok, example.context, example.continuations[answer])
        ids = context + continuation
        table = {ids[i]: ids[i + 1] for i in range(len(context) - 1, len(ids) - 1)}
        fixed = [MultipleChoice(example.context, example.choices, answer)]
        result = score_task(BigramModel(len(tok), table), tok, fixed)
        assert result["accuracy"] == 1.0, (task, answer)
    assert result["chance"] == pytest.approx(1 / len(example.choices))
    wrong = [MultipleChoice(example.context, example.choices, (answer + 1) % len(example.choices))]
    assert score_task(BigramModel(len(tok), table), tok, wrong)["accuracy"] == 0.0


def test_macro_f1_by_hand():
    labels, predictions = [1, 1, 0, 0], [1, 0, 0, 0]
    # class 1: tp 1, fp 0, fn 1 -> 2/3; class 0: tp 2, fp 1, fn 0 -> 4/5
    assert macro_f1(labels, predictions) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_copa_connectors():
    cause = to_examples("copa", [{**FIXTURES["copa"][0], "question": "원인"}])[0]
    effect = to_examples("copa", FIXTURES["copa"])[0]
    assert cause.context.endswith("왜냐하면") and effect.context.endswith("그래서")


# lm-eval 0.4.13's kobest_* prompts, spelled out (tests/test_harness.py checks them against the harness).
HARNESS_PROMPTS = {
    "boolq": ("하늘은 파랗다. 질문: 하늘은 파란가? 답변: ", (" 아니오", " 예")),
    "copa": ("비가 왔다.  그래서", (" 우산을 썼다.", " 춤을 췄다.")),
    "hellaswag": ("문장: 그는 문을 열고", (" 나갔다.", " 먹었다.", " 잤다.", " 울었다.")),
    "sentineg": ("문장: 정말 좋다 긍부정:", (" 부정", " 긍정")),
    "wic": ("문장1: 배가 고프다. 문장2: 배를 탔다. 두 문장에서 배가 같은 뜻으로 쓰였나?", (" 아니오", " 예")),
}


@pytest.mark.parametrize("task", TASKS)
def test_kobest_prompts_are_the_harness_templates(task):
    example = to_examples(task, FIXTURES[task])[0]
    assert (example.context, example.continuations) == HARNESS_PROMPTS[task]


def test_trailing_space_of_the_context_moves_to_the_continuation():
    tok = SyllableTokenizer()
    context, continuation = encode_pair(tok, "하늘 답변: ", " 예")
    assert context == tok("하늘 답변:").input_ids and continuation == tok("  예").input_ids


def test_accuracy_norm_divides_by_the_answer_characters():
    """Summed log-likelihood picks the short answer, per character the long one (as the harness's acc_norm)."""
    tok = SyllableTokenizer()
    example = MultipleChoice("문장:", ("가", "나다나다"), 1)
    ids_short = encode_pair(tok, example.context, example.continuations[0])
    ids_long = encode_pair(tok, example.context, example.continuations[1])
    # a uniform model: every token costs log V, so summed scores favour the shorter continuation
    result = score_task(UniformModel(len(tok)), tok, [example])
    assert len(ids_short[1]) < len(ids_long[1])
    assert result["accuracy"] == 0.0
    # per character: (2 log V)/1 against (5 log V)/4, so the long answer wins
    assert result["accuracy_norm"] == 1.0


@pytest.mark.parametrize("architecture", ["Phi", "Llama"])
def test_generation_cost_decodes_with_the_cache_argument_of_transformers_5(architecture):
    """Forced decoding (chapter 05's generation cost) feeds the KV cache back by its current name:
    no deprecation warning in the chapter's output, one step per token."""
    import warnings

    import transformers

    from eeve_lib.method.evaluation import generation_cost

    config = getattr(transformers, f"{architecture}Config")(
        vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2)
    torch.manual_seed(0)
    model = getattr(transformers, f"{architecture}ForCausalLM")(config)

    class Tokenizer(CharTokenizer):
        def __call__(self, text, add_special_tokens=False, return_tensors=None):
            ids = [self.alphabet.index(c) for c in text]
            return SimpleNamespace(input_ids=torch.tensor([ids]) if return_tensors == "pt" else ids)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cost = generation_cost(model, Tokenizer(), "abc 가나", repeats=1)
    assert cost["tokens"] == cost["characters"] == 6 and cost["seconds"] > 0
