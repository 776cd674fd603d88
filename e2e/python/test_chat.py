"""Hone's chat API (`POST /v1/chat/completions`) driven by the official
`openai` package, as any chat application drives OpenAI: only `base_url`
and `api_key` changed.

`e2e/tests/openai.rs` trains a LoRA version of the demo model, has a
reviewer approve it, computes what `hone-train evaluate` answers greedily
(12 new tokens at most) for the prompt "What is 3 plus one?" with that version's
adapter and with the base, and runs this file with:

  HONE_API_BASE          http://127.0.0.1:PORT/v1
  HONE_API_KEY           ada's key for the project
  HONE_MODEL             the approved version's `ft:` name
  HONE_UNAPPROVED_MODEL  another job's `ft:` name, trained, not approved
  HONE_EXPECTED          the engine's answer with the adapter
  HONE_EXPECTED_BASE     the engine's answer of the base model
  HONE_STRICT_MODEL      a base model whose chat template refuses system
                         messages
"""

import os
import unittest

import openai

BASE = os.environ["HONE_API_BASE"].rstrip("/")
KEY = os.environ["HONE_API_KEY"]
MODEL = os.environ["HONE_MODEL"]
UNAPPROVED = os.environ["HONE_UNAPPROVED_MODEL"]
EXPECTED = os.environ["HONE_EXPECTED"]
EXPECTED_BASE = os.environ["HONE_EXPECTED_BASE"]
STRICT = os.environ["HONE_STRICT_MODEL"]
ASK = [{"role": "user", "content": "What is 3 plus one?"}]


def client(retries=0):
    return openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=retries, timeout=120)


# A client as applications configure one: on 429 it waits as Retry-After
# says and tries again (a stream the test dropped frees its place once the
# server notices, within moments).
def patient():
    return client(retries=8)


class Chat(unittest.TestCase):
    def test_an_approved_version_answers_as_the_engine_does(self):
        r = client().chat.completions.create(
            model=MODEL, messages=ASK, temperature=0, max_tokens=12
        )
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.model, MODEL)
        self.assertEqual(len(r.choices), 1)
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertEqual(r.choices[0].message.content, EXPECTED)
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertGreater(r.usage.prompt_tokens, 0)
        self.assertLessEqual(r.usage.completion_tokens, 12)
        self.assertEqual(
            r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens
        )

    def test_streamed_chunks_add_up_to_the_same_answer(self):
        stream = client().chat.completions.create(
            model=MODEL,
            messages=ASK,
            temperature=0,
            max_completion_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
        text, finish, usage, roles = "", None, None, []
        for chunk in stream:
            self.assertEqual(chunk.object, "chat.completion.chunk")
            if chunk.usage is not None:
                usage = chunk.usage
                self.assertEqual(chunk.choices, [])
                continue
            delta = chunk.choices[0].delta
            if delta.role:
                roles.append(delta.role)
            text += delta.content or ""
            if chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
        self.assertEqual(roles, ["assistant"])
        self.assertEqual(text, EXPECTED)
        self.assertIn(finish, ("stop", "length"))
        self.assertIsNotNone(usage)
        self.assertLessEqual(usage.completion_tokens, 12)

    def test_the_base_model_answers_as_the_engines_base(self):
        r = client().chat.completions.create(
            model="hone-demo", messages=ASK, temperature=0, max_tokens=12
        )
        self.assertEqual(r.choices[0].message.content, EXPECTED_BASE)

    def test_a_version_not_approved_is_not_found(self):
        with self.assertRaises(openai.NotFoundError) as e:
            client().chat.completions.create(model=UNAPPROVED, messages=ASK)
        self.assertEqual(e.exception.code, "model_not_found")

    def test_bad_requests_name_the_problem(self):
        # The demo model reads 2048 tokens; the server caps answers at
        # 4096 new tokens (HONE_CHAT_MAX_TOKENS).
        with self.assertRaises(openai.BadRequestError) as e:
            client().chat.completions.create(model=MODEL, messages=ASK, max_tokens=2047)
        self.assertEqual(e.exception.code, "context_length_exceeded")
        self.assertIn("2047", e.exception.message)
        with self.assertRaises(openai.BadRequestError) as e:
            client().chat.completions.create(model=MODEL, messages=ASK, max_tokens=5000)
        self.assertEqual(e.exception.param, "max_tokens")
        self.assertIn("4096", e.exception.message)
        with self.assertRaises(openai.BadRequestError) as e:
            client().chat.completions.create(model=MODEL, messages=ASK, n=2)
        self.assertEqual(e.exception.param, "n")
        # Messages the model's chat template refuses: its words, 400.
        with self.assertRaises(openai.BadRequestError) as e:
            client().chat.completions.create(
                model=STRICT,
                messages=[{"role": "system", "content": "Be brief."}] + ASK,
            )
        self.assertIn("System messages are not supported", e.exception.message)
        self.assertEqual(e.exception.param, "messages")
        ok = client().chat.completions.create(model=STRICT, messages=ASK, max_tokens=2)
        self.assertEqual(ok.choices[0].message.role, "assistant")

    def test_a_full_queue_answers_429_and_frees_as_the_stream_ends(self):
        # The server takes one request per service at once here
        # (HONE_SERVE_QUEUE=1): a long stream holds the place (the
        # version's greedy answer runs on to the end of the context).
        held = [
            patient().chat.completions.create(
                model=MODEL, messages=ASK, temperature=0, stream=True
            )
        ]
        for h in held:
            next(iter(h))
        with self.assertRaises(openai.RateLimitError) as e:
            client().chat.completions.create(model=MODEL, messages=ASK, max_tokens=4)
        self.assertEqual(e.exception.response.headers.get("retry-after"), "1")
        self.assertEqual(e.exception.code, "rate_limit_exceeded")
        for h in held:
            h.close()
        r = patient().chat.completions.create(
            model=MODEL, messages=ASK, temperature=0, max_tokens=12
        )
        self.assertEqual(r.choices[0].message.content, EXPECTED)

    def test_a_dropped_stream_frees_the_service(self):
        stream = patient().chat.completions.create(
            model=MODEL, messages=ASK, temperature=0, stream=True
        )
        next(iter(stream))
        stream.close()
        # The next request is answered (the dropped one was cancelled;
        # the server's log says so, which the Rust side checks).
        r = patient().chat.completions.create(
            model=MODEL, messages=ASK, temperature=0, max_tokens=12
        )
        self.assertEqual(r.choices[0].message.content, EXPECTED)


if __name__ == "__main__":
    unittest.main()
