"""Hone's OpenAI-compatible API driven by the official `openai` package, as
a script written for OpenAI's fine-tuning would drive it: only `base_url`
and `api_key` changed.

`e2e/tests/openai.rs` starts a real `hone serve` with a fresh data
directory, makes the accounts, projects and keys, and runs this file with:

  HONE_API_BASE            http://127.0.0.1:PORT/v1
  HONE_API_KEY             ada's key (expert, team Ops) for her project
  HONE_API_KEY_READER      rita's key (reviewer, team Ops) for the same project
  HONE_API_KEY_OTHER_TEAM  bob's key (expert, team Lab) for his own project
  HONE_API_KEY_REVOKED     a key of ada's, revoked before this runs
  HONE_MAX_UPLOAD_BYTES    the server's upload limit

Waits poll a condition (a file's or a job's status) with a deadline; none
sleeps to synchronise. Jobs train the built-in demo model for one epoch of
a few examples, so a run takes seconds.
"""

import json
import os
import re
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import openai
from openai.types import FileDeleted, FileObject, Model
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

BASE = os.environ["HONE_API_BASE"].rstrip("/")
KEY = os.environ["HONE_API_KEY"]
READER_KEY = os.environ["HONE_API_KEY_READER"]
OTHER_TEAM_KEY = os.environ["HONE_API_KEY_OTHER_TEAM"]
REVOKED_KEY = os.environ["HONE_API_KEY_REVOKED"]
MAX_UPLOAD = int(os.environ["HONE_MAX_UPLOAD_BYTES"])

DEMO = "hone-demo"
FINAL = {"succeeded", "failed", "cancelled"}
STATES = {"validating_files", "queued", "running", "cancelling"} | FINAL
STEP = 0.1  # seconds between polls
FILE_DEADLINE = 60.0
JOB_DEADLINE = 300.0


def client(key=KEY):
    # No retries: a refusal must be seen as the server sent it, not
    # retried (the client retries 409, 429 and 5xx by default).
    return openai.OpenAI(base_url=BASE, api_key=key, max_retries=0, timeout=60)


API = client()
WORK = tempfile.mkdtemp(prefix="hone-openai-")


def chat_line(i):
    return json.dumps(
        {
            "messages": [
                {"role": "user", "content": f"What is {i} plus one?"},
                {"role": "assistant", "content": f"It is {i + 1}."},
            ]
        }
    )


def examples(n, start=0):
    return "".join(chat_line(i) + "\n" for i in range(start, start + n)).encode()


# Line 2 is not JSON; line 3 has no assistant message.
BAD = (
    chat_line(1)
    + "\nthis line is not JSON\n"
    + json.dumps({"messages": [{"role": "user", "content": "Only a question"}]})
    + "\n"
    + "".join(chat_line(i) + "\n" for i in range(2, 8))
).encode()


def mentions_line(text, n):
    """Whether `text` names line `n` ("line 2", "Line 2:"…)."""
    return re.search(rf"\bline {n}\b", text or "", re.IGNORECASE) is not None


def write(name, data):
    path = os.path.join(WORK, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def upload(name, data, c=API, purpose="fine-tune"):
    with open(write(name, data), "rb") as f:
        return c.files.create(file=f, purpose=purpose)


def wait_file(fid, c=API):
    """The file once its checks are done (status no longer "uploaded")."""
    deadline = time.monotonic() + FILE_DEADLINE
    while True:
        f = c.files.retrieve(fid)
        if f.status != "uploaded":
            return f
        if time.monotonic() > deadline:
            raise AssertionError(f"{fid} still 'uploaded' after {FILE_DEADLINE} s")
        time.sleep(STEP)


def wait_job(jid, until=FINAL, c=API, deadline_s=JOB_DEADLINE):
    deadline = time.monotonic() + deadline_s
    while True:
        j = c.fine_tuning.jobs.retrieve(jid)
        if j.status in until:
            return j
        if j.status in FINAL:
            raise AssertionError(f"{jid} ended {j.status} (error: {j.error}) waiting for {until}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{jid} still {j.status} after {deadline_s} s waiting for {until}")
        time.sleep(STEP)


def supervised(n_epochs=1, batch_size=4, lr=1.0):
    return {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {
                "n_epochs": n_epochs,
                "batch_size": batch_size,
                "learning_rate_multiplier": lr,
            }
        },
    }


HONE = {"hone": {"max_seq_length": 128}}


def create_job(fid, c=API, **kw):
    args = dict(training_file=fid, model=DEMO, seed=7, method=supervised(), extra_body=HONE)
    args.update(kw)
    return c.fine_tuning.jobs.create(**args)


def cancel_quietly(jid):
    try:
        API.fine_tuning.jobs.cancel(jid)
    except openai.APIError:
        pass


def raw(method, path, body=None, headers=None, key=KEY):
    """A request outside the client (to send what it never would);
    returns (status, body bytes)."""
    h = {"Authorization": f"Bearer {key}"} if key else {}
    h.update(headers or {})
    req = urllib.request.Request(BASE + path, data=body, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Case(unittest.TestCase):
    maxDiff = None

    def assertShape(self, obj, cls=None):
        """`obj` (as the server sent it) validates as OpenAI's own type:
        every required field there, with OpenAI's types and values.
        Hone's extra "cancelling" state stands in for "cancelled"."""
        cls = cls or type(obj)
        data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        if data.get("status") == "cancelling":
            data["status"] = "cancelled"
        try:
            cls.model_validate(data)
        except Exception as e:  # pydantic's ValidationError lists every field
            self.fail(f"not OpenAI's {cls.__name__}: {e}\n--- sent ---\n{json.dumps(data, indent=1)}")

    def assertErrorBody(self, body, status=None):
        """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
        if isinstance(body, (bytes, str)):
            try:
                body = json.loads(body)
            except ValueError:
                self.fail(f"error body is not JSON (status {status}): {body[:500]!r}")
        self.assertIsInstance(body, dict, body)
        self.assertIn("error", body, body)
        err = body["error"]
        for k in ("message", "type", "param", "code"):
            self.assertIn(k, err, f"error body lacks {k!r}: {body}")
        self.assertIsInstance(err["message"], str, body)
        self.assertTrue(err["message"], f"empty error message: {body}")
        self.assertIsInstance(err["type"], str, body)
        return err

    def assertApiError(self, ctx, status):
        """The exception the client raised came from an HTTP `status`
        answer in OpenAI's error shape; returns the exception."""
        e = ctx.exception
        self.assertIsInstance(e, openai.APIStatusError, repr(e))
        self.assertEqual(e.status_code, status, f"{e.status_code}: {e.response.text[:500]}")
        self.assertErrorBody(e.response.content, e.status_code)
        return e


class AuthTest(Case):
    """Wrong, revoked and missing keys; another team's key; a reviewer's."""

    @classmethod
    def setUpClass(cls):
        f = upload("auth.jsonl", examples(20))
        cls.file = wait_file(f.id)
        assert cls.file.status == "processed", cls.file
        cls.job = create_job(f.id)
        cls.job = wait_job(cls.job.id)
        assert cls.job.status == "succeeded", cls.job

    def test_wrong_key_is_401_in_openais_error_shape(self):
        for key in ("sk-hone-" + "0" * 64, "not-a-hone-key"):
            with self.subTest(key=key[:12]):
                with self.assertRaises(openai.AuthenticationError) as ctx:
                    client(key).models.list()
                self.assertApiError(ctx, 401)
                with self.assertRaises(openai.AuthenticationError) as ctx:
                    client(key).fine_tuning.jobs.retrieve(self.job.id)
                self.assertApiError(ctx, 401)

    def test_revoked_key_is_401(self):
        for call in (
            lambda c: c.models.list(),
            lambda c: c.files.list(),
            lambda c: c.fine_tuning.jobs.list(),
            lambda c: c.files.retrieve(self.file.id),
        ):
            with self.assertRaises(openai.AuthenticationError) as ctx:
                call(client(REVOKED_KEY))
            self.assertApiError(ctx, 401)

    def test_no_key_is_401(self):
        for path in ("/models", "/files", "/fine_tuning/jobs"):
            with self.subTest(path=path):
                status, body = raw("GET", path, key=None)
                self.assertEqual(status, 401, body)
                self.assertErrorBody(body, status)

    def test_another_teams_key_gets_404_for_this_teams_job_and_file(self):
        bob = client(OTHER_TEAM_KEY)
        jid, fid = self.job.id, self.file.id
        for name, call in (
            ("jobs.retrieve", lambda: bob.fine_tuning.jobs.retrieve(jid)),
            ("jobs.list_events", lambda: bob.fine_tuning.jobs.list_events(jid)),
            ("jobs.checkpoints.list", lambda: bob.fine_tuning.jobs.checkpoints.list(jid)),
            ("jobs.cancel", lambda: bob.fine_tuning.jobs.cancel(jid)),
            ("files.retrieve", lambda: bob.files.retrieve(fid)),
            ("files.content", lambda: bob.files.content(fid)),
            ("files.delete", lambda: bob.files.delete(fid)),
        ):
            with self.subTest(call=name):
                with self.assertRaises(openai.NotFoundError) as ctx:
                    call()
                self.assertApiError(ctx, 404)
        # Nor can his key train on this team's file.
        with self.assertRaises((openai.NotFoundError, openai.BadRequestError)) as ctx:
            create_job(fid, c=bob)
        self.assertErrorBody(ctx.exception.response.content)
        # His lists do not show them.
        self.assertNotIn(jid, [j.id for j in bob.fine_tuning.jobs.list(limit=100)])
        self.assertNotIn(fid, [f.id for f in bob.files.list()])
        # The file is still there for its own team.
        self.assertEqual(API.files.retrieve(fid).id, fid)

    def test_reviewer_key_may_list_and_retrieve(self):
        rita = client(READER_KEY)
        self.assertIn(DEMO, [m.id for m in rita.models.list()])
        self.assertIn(self.file.id, [f.id for f in rita.files.list()])
        self.assertEqual(rita.files.retrieve(self.file.id).id, self.file.id)
        self.assertEqual(rita.files.content(self.file.id).content, examples(20))
        self.assertIn(self.job.id, [j.id for j in rita.fine_tuning.jobs.list(limit=100)])
        self.assertEqual(rita.fine_tuning.jobs.retrieve(self.job.id).status, "succeeded")
        self.assertIn(self.job.fine_tuned_model, [m.id for m in rita.models.list()])
        rita.fine_tuning.jobs.list_events(self.job.id)
        rita.fine_tuning.jobs.checkpoints.list(self.job.id)

    def test_reviewer_key_may_not_create_a_job(self):
        with self.assertRaises(openai.PermissionDeniedError) as ctx:
            create_job(self.file.id, c=client(READER_KEY))
        self.assertApiError(ctx, 403)

    def test_reviewer_key_may_not_upload_delete_or_cancel(self):
        # As in the browser (ARCHITECTURE.md's table): reviewers read.
        rita = client(READER_KEY)
        with open(write("rita.jsonl", examples(5)), "rb") as f:
            with self.assertRaises(openai.PermissionDeniedError) as ctx:
                rita.files.create(file=f, purpose="fine-tune")
        self.assertApiError(ctx, 403)
        with self.assertRaises(openai.PermissionDeniedError) as ctx:
            rita.files.delete(self.file.id)
        self.assertApiError(ctx, 403)
        with self.assertRaises(openai.PermissionDeniedError) as ctx:
            rita.fine_tuning.jobs.cancel(self.job.id)
        self.assertApiError(ctx, 403)


class FilesTest(Case):
    def test_upload_answers_uploaded_then_the_checks_make_it_processed(self):
        data = examples(16)
        f = upload("good.jsonl", data)
        self.assertShape(f)
        self.assertEqual(f.status, "uploaded")
        self.assertRegex(f.id, r"^file-\d+$")
        self.assertEqual(f.object, "file")
        self.assertEqual(f.purpose, "fine-tune")
        self.assertEqual(f.bytes, len(data))
        self.assertEqual(f.filename, "good.jsonl")
        done = wait_file(f.id)
        self.assertEqual(done.status, "processed", done.status_details)
        self.assertShape(done)
        self.assertEqual((done.id, done.bytes, done.created_at), (f.id, f.bytes, f.created_at))

    def test_a_file_with_errors_ends_in_error_with_its_findings_by_line(self):
        f = upload("bad.jsonl", BAD)
        self.assertEqual(f.status, "uploaded")
        done = wait_file(f.id)
        self.assertEqual(done.status, "error", done)
        self.assertShape(done)
        details = done.status_details or ""
        self.assertTrue(mentions_line(details, 2), details)
        self.assertTrue(mentions_line(details, 3), details)

    def test_a_purpose_other_than_fine_tune_is_400_naming_it(self):
        with open(write("assist.jsonl", examples(3)), "rb") as f:
            with self.assertRaises(openai.BadRequestError) as ctx:
                API.files.create(file=f, purpose="assistants")
        e = self.assertApiError(ctx, 400)
        self.assertEqual(e.param, "purpose", e.body)

    def test_a_file_over_the_upload_limit_is_413_and_the_connection_stays_usable(self):
        line = chat_line(7) + "\n"
        data = (line * (MAX_UPLOAD // len(line) + 64)).encode()
        self.assertGreater(len(data), MAX_UPLOAD)
        # A client of its own: its connections are not the other tests'.
        c = client()
        self.addCleanup(c.close)
        for attempt in range(10):
            try:
                c.files.create(file=("big.jsonl", data), purpose="fine-tune")
            except openai.APIStatusError as e:
                self.assertEqual(e.status_code, 413, e.response.text[:500])
                self.assertErrorBody(e.response.content, e.status_code)
                closes = e.response.headers.get("connection", "").lower() == "close"
            except openai.APIConnectionError as e:
                self.fail(f"the server closed the connection instead of answering 413: {e!r} ({e.__cause__!r})")
            else:
                self.fail(f"a {len(data)}-byte upload over the {MAX_UPLOAD}-byte limit was accepted")
            if closes:
                return
            # The body was refused unread, yet the connection was kept
            # alive: the client sends its next request on it.
            try:
                c.files.create(file=(f"small{attempt}.jsonl", examples(2)), purpose="fine-tune")
            except openai.APIConnectionError as e:
                self.fail(
                    f"after a 413 without `Connection: close`, the next request on the same connection "
                    f"failed (round {attempt + 1}): {e.__cause__!r}"
                )

    def test_malformed_multipart_is_400(self):
        cut = (
            b"--hone\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"
            b"--hone\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n{\"messages\": ["
        )
        no_file = b"--hone\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--hone--\r\n"
        for name, body, ctype in (
            ("cut short", cut, "multipart/form-data; boundary=hone"),
            ("no file part", no_file, "multipart/form-data; boundary=hone"),
            ("no boundary", no_file, "multipart/form-data"),
            ("garbage", b"\x00\x01 not multipart at all", "multipart/form-data; boundary=hone"),
        ):
            with self.subTest(body=name):
                status, got = raw("POST", "/files", body, {"Content-Type": ctype})
                self.assertEqual(status, 400, got[:500])
                self.assertErrorBody(got, status)

    def test_list_paginates_retrieve_content_and_delete(self):
        datas = [examples(4, start=100 * k) for k in range(3)]
        ids = [upload(f"page{k}.jsonl", d).id for k, d in enumerate(datas)]
        for fid in ids:
            wait_file(fid)
        newest = API.files.list(limit=2, order="desc")
        self.assertEqual([f.id for f in newest.data], [ids[2], ids[1]])
        self.assertTrue(newest.has_more)
        for f in newest.data:
            self.assertShape(f)
        after = API.files.list(limit=2, order="desc", after=ids[1])
        self.assertEqual(after.data[0].id, ids[0])
        oldest_first = API.files.list(limit=2, order="asc", after=ids[0])
        self.assertEqual([f.id for f in oldest_first.data], [ids[1], ids[2]])
        # The client's auto-pagination walks every page once.
        walked = [f.id for f in API.files.list(limit=1)]
        self.assertEqual(len(walked), len(set(walked)), walked)
        self.assertTrue(set(ids) <= set(walked), walked)
        # A cursor that does not exist: an empty page, not an error.
        empty = API.files.list(after="file-999999")
        self.assertEqual(empty.data, [])
        self.assertFalse(empty.has_more)

        for fid, data in zip(ids, datas):
            self.assertEqual(API.files.retrieve(fid).id, fid)
            self.assertEqual(API.files.content(fid).content, data)

        gone = API.files.delete(ids[2])
        self.assertShape(gone, FileDeleted)
        self.assertEqual((gone.id, gone.object, gone.deleted), (ids[2], "file", True))
        with self.assertRaises(openai.NotFoundError) as ctx:
            API.files.retrieve(ids[2])
        self.assertApiError(ctx, 404)
        with self.assertRaises(openai.NotFoundError) as ctx:
            API.files.content(ids[2])
        self.assertApiError(ctx, 404)
        with self.assertRaises(openai.NotFoundError) as ctx:
            API.files.delete(ids[2])
        self.assertApiError(ctx, 404)
        self.assertNotIn(ids[2], [f.id for f in API.files.list()])
        with self.assertRaises(openai.NotFoundError) as ctx:
            API.files.retrieve("file-999999")
        self.assertApiError(ctx, 404)


class JobsTest(Case):
    @classmethod
    def setUpClass(cls):
        f = upload("train.jsonl", examples(24))
        cls.file = wait_file(f.id)
        assert cls.file.status == "processed", cls.file

    def test_models_list_the_demo_model(self):
        models = API.models.list()
        ids = [m.id for m in models]
        self.assertIn(DEMO, ids)
        for m in models:
            self.assertShape(m, Model)
        self.assertEqual(API.models.retrieve(DEMO).id, DEMO)

    def test_a_job_on_the_demo_model_trains_to_succeeded_with_events_checkpoints_and_a_model(self):
        t0 = time.monotonic()
        job = create_job(self.file.id, suffix="arith")
        created = time.monotonic()
        self.addCleanup(cancel_quietly, job.id)
        self.assertShape(job)
        self.assertRegex(job.id, r"^ftjob-\d+$")
        self.assertEqual(job.object, "fine_tuning.job")
        self.assertIn(job.status, {"validating_files", "queued", "running"})
        self.assertEqual(job.model, DEMO)
        self.assertEqual(job.training_file, self.file.id)
        self.assertIsNone(job.validation_file)
        self.assertIsNone(job.fine_tuned_model)
        self.assertIsNone(job.error)
        self.assertEqual(job.seed, 7)
        hp = job.hyperparameters
        self.assertEqual((hp.n_epochs, hp.batch_size), (1, 4), hp)
        self.assertAlmostEqual(float(hp.learning_rate_multiplier), 1.0)

        # Follow it as a script does: its status and its events, until it ends.
        seen_states, event_ids, estimated = [job.status], set(), None
        deadline = created + JOB_DEADLINE
        while True:
            for e in API.fine_tuning.jobs.list_events(job.id, limit=50).data:
                event_ids.add(e.id)
            j = API.fine_tuning.jobs.retrieve(job.id)
            if j.status != seen_states[-1]:
                seen_states.append(j.status)
            if j.status == "running" and j.estimated_finish is not None:
                estimated = j.estimated_finish
            if j.status in FINAL:
                break
            self.assertLess(time.monotonic(), deadline, f"still {j.status} after {JOB_DEADLINE} s")
            time.sleep(STEP)
        took = time.monotonic() - created
        # On unittest's stream, so the line sits beside the test's name.
        print(f"\ncreate→succeeded: {took:.1f} s (jobs.create itself {created - t0:.2f} s; "
              f"states {' → '.join(seen_states)}) ... ", end="", file=sys.stderr, flush=True)
        self.assertEqual(j.status, "succeeded", f"error: {j.error}")
        self.assertShape(j)
        self.assertIsNone(j.error)
        self.assertEqual(j.fine_tuned_model, f"ft:{DEMO}:ops:arith:{job.id}")
        self.assertIsInstance(j.trained_tokens, int)
        self.assertGreater(j.trained_tokens, 0)
        self.assertIsInstance(j.finished_at, int)
        self.assertGreaterEqual(j.finished_at, j.created_at)
        if estimated is not None:
            self.assertIsInstance(estimated, int)

        # Events: OpenAI's objects, every one walked once by auto-pagination.
        events = list(API.fine_tuning.jobs.list_events(job.id, limit=5))
        self.assertTrue(events)
        ids = [e.id for e in events]
        self.assertEqual(len(ids), len(set(ids)), ids)
        self.assertTrue(event_ids <= set(ids), event_ids - set(ids))
        for e in events:
            self.assertShape(e, FineTuningJobEvent)
            self.assertTrue(e.message, e)
        # Newest first, as OpenAI lists them.
        times = [e.created_at for e in events]
        self.assertEqual(times, sorted(times, reverse=True), times)
        # The engine's steps as OpenAI's metrics events.
        metrics = [e.data for e in events if e.type == "metrics" and isinstance(e.data, dict)]
        steps = {d["step"] for d in metrics if "step" in d and "train_loss" in d}
        self.assertTrue(steps, f"no metrics event with step and train_loss: {[e.to_dict() for e in events][:10]}")
        page = API.fine_tuning.jobs.list_events(job.id, limit=2)
        self.assertEqual(len(page.data), 2)
        self.assertTrue(page.has_more)

        # Checkpoints (the engine saves at least the last step).
        cps = list(API.fine_tuning.jobs.checkpoints.list(job.id, limit=2))
        self.assertTrue(cps, "no checkpoints listed")
        for cp in cps:
            self.assertShape(cp, FineTuningJobCheckpoint)
            self.assertEqual(cp.fine_tuning_job_id, job.id)
            self.assertGreater(cp.step_number, 0)
            self.assertTrue(cp.fine_tuned_model_checkpoint)
        numbers = [cp.step_number for cp in cps]
        self.assertEqual(len(numbers), len(set(numbers)), numbers)
        self.assertEqual(max(numbers), max(steps), "the last step's checkpoint is not listed")

        # The fine-tuned model is listed for this project, not for another team.
        self.assertIn(j.fine_tuned_model, [m.id for m in API.models.list()])
        self.assertEqual(API.models.retrieve(j.fine_tuned_model).id, j.fine_tuned_model)
        self.assertNotIn(j.fine_tuned_model, [m.id for m in client(OTHER_TEAM_KEY).models.list()])

    def test_a_second_job_is_cancelled_while_running_and_its_file_kept_until_then(self):
        f = wait_file(upload("cancel.jsonl", examples(24)).id)
        self.assertEqual(f.status, "processed", f.status_details)
        # Long enough (thousands of steps) to be cancelled in the middle.
        job = create_job(f.id, method=supervised(n_epochs=200, batch_size=1))
        self.addCleanup(cancel_quietly, job.id)
        wait_job(job.id, {"running"})
        with self.assertRaises(openai.ConflictError) as ctx:
            API.files.delete(f.id)
        self.assertApiError(ctx, 409)
        cancelled = API.fine_tuning.jobs.cancel(job.id)
        self.assertShape(cancelled)
        self.assertEqual(cancelled.id, job.id)
        self.assertIn(cancelled.status, {"cancelling", "cancelled"})
        done = wait_job(job.id, {"cancelled"})
        self.assertIsNone(done.fine_tuned_model)
        self.assertFalse([m.id for m in API.models.list() if m.id.endswith(f":{job.id}")])
        # Cancelling again changes nothing and is no server error.
        try:
            again = API.fine_tuning.jobs.cancel(job.id)
            self.assertEqual(again.status, "cancelled")
        except openai.APIStatusError as e:
            self.assertLess(e.status_code, 500, e.response.text)
            self.assertErrorBody(e.response.content, e.status_code)
        # No job uses the file any more: it may go.
        self.assertTrue(API.files.delete(f.id).deleted)

    def test_a_new_job_keeps_its_file_from_deletion_and_cancels(self):
        f = wait_file(upload("queued.jsonl", examples(24, start=30)).id)
        self.assertEqual(f.status, "processed", f.status_details)
        job = create_job(f.id, method=supervised(n_epochs=200, batch_size=1))
        self.addCleanup(cancel_quietly, job.id)
        with self.assertRaises(openai.ConflictError) as ctx:
            API.files.delete(f.id)
        self.assertApiError(ctx, 409)
        c = API.fine_tuning.jobs.cancel(job.id)
        self.assertIn(c.status, {"cancelling", "cancelled"})
        wait_job(job.id, {"cancelled"})

    def test_jobs_list_pages_newest_first_with_a_cursor(self):
        # Long runs, so each is still queued or running when cancelled.
        jobs = [create_job(self.file.id, method=supervised(n_epochs=200, batch_size=1)) for _ in range(3)]
        for j in jobs:
            self.addCleanup(cancel_quietly, j.id)
        ids = [j.id for j in jobs]
        first = API.fine_tuning.jobs.list(limit=2)
        self.assertEqual([j.id for j in first.data], [ids[2], ids[1]])
        self.assertTrue(first.has_more)
        for j in first.data:
            self.assertShape(j)
        second = API.fine_tuning.jobs.list(limit=2, after=ids[1])
        self.assertEqual(second.data[0].id, ids[0])
        walked = [j.id for j in API.fine_tuning.jobs.list(limit=2)]
        self.assertEqual(len(walked), len(set(walked)), walked)
        self.assertEqual(walked[:3], ids[::-1])
        empty = API.fine_tuning.jobs.list(after="ftjob-999999")
        self.assertEqual(empty.data, [])
        self.assertFalse(empty.has_more)
        with self.assertRaises(openai.NotFoundError) as ctx:
            API.fine_tuning.jobs.retrieve("ftjob-999999")
        self.assertApiError(ctx, 404)
        for j in jobs:
            self.assertIn(API.fine_tuning.jobs.cancel(j.id).status, {"cancelling", "cancelled"})
        for j in jobs:
            wait_job(j.id, {"cancelled"})

    def test_auto_hyperparameters_are_accepted(self):
        auto = {"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}}}
        job = create_job(self.file.id, method=auto)
        self.addCleanup(cancel_quietly, job.id)
        self.assertShape(job)
        for name in ("n_epochs", "batch_size", "learning_rate_multiplier"):
            self.assertIsNotNone(getattr(job.hyperparameters, name), name)
        API.fine_tuning.jobs.cancel(job.id)
        wait_job(job.id, {"cancelled"})

    def test_with_a_validation_file_the_training_file_is_split_90_0_10(self):
        # 20 examples: 18 to train on with a validation file (90/0/10),
        # 16 without (80/10/10).
        v = wait_file(upload("valid.jsonl", examples(6, start=50)).id)
        t = wait_file(upload("train20.jsonl", examples(20, start=300)).id)
        self.assertEqual((v.status, t.status), ("processed", "processed"))
        counts = {}
        for name, kw in (("with", dict(validation_file=v.id)), ("without", {})):
            job = create_job(t.id, **kw)
            self.addCleanup(cancel_quietly, job.id)
            self.assertEqual(job.validation_file, kw.get("validation_file"))
            done = wait_job(job.id)
            self.assertEqual(done.status, "succeeded", done.error)
            started = [e.data for e in API.fine_tuning.jobs.list_events(job.id, limit=100)
                       if isinstance(e.data, dict) and "examples" in e.data]
            self.assertTrue(started, "no event says how many examples training read")
            counts[name] = started[0]["examples"]
        self.assertEqual(counts, {"with": 18, "without": 16})

    def test_an_unknown_model_is_404_listing_the_available_ones(self):
        with self.assertRaises(openai.NotFoundError) as ctx:
            create_job(self.file.id, model="gpt-4o-mini-2024-07-18")
        e = self.assertApiError(ctx, 404)
        self.assertIn(DEMO, e.message)

    def test_an_unknown_training_file_is_refused_naming_it(self):
        with self.assertRaises((openai.BadRequestError, openai.NotFoundError)) as ctx:
            create_job("file-999999")
        err = self.assertErrorBody(ctx.exception.response.content)
        self.assertIn("training_file", f"{err['param']} {err['message']}", err)

    def test_a_hyperparameter_out_of_range_is_400_naming_it(self):
        for name, method in (
            ("n_epochs", supervised(n_epochs=0)),
            ("n_epochs", supervised(n_epochs=100000)),
            ("batch_size", supervised(batch_size=0)),
            ("learning_rate_multiplier", supervised(lr=-1.0)),
        ):
            with self.subTest(name=name, hp=method["supervised"]["hyperparameters"][name]):
                with self.assertRaises(openai.BadRequestError) as ctx:
                    create_job(self.file.id, method=method)
                e = self.assertApiError(ctx, 400)
                self.assertIn(name, e.param or "", e.body)

    def assertJobRefusesOrFailsWithFindings(self, fid):
        try:
            job = create_job(fid)
        except openai.BadRequestError as e:
            self.assertErrorBody(e.response.content, 400)
            self.assertTrue(mentions_line(e.message, 2), e.message)
            return
        self.addCleanup(cancel_quietly, job.id)
        done = wait_job(job.id)
        self.assertEqual(done.status, "failed")
        self.assertShape(done)
        self.assertTrue(done.error and done.error.code, done.error)
        self.assertTrue(mentions_line(done.error.message, 2), done.error.message)

    def test_a_job_on_a_file_with_errors_fails_with_the_findings(self):
        bad = wait_file(upload("bad-for-job.jsonl", BAD).id)
        self.assertEqual(bad.status, "error")
        self.assertJobRefusesOrFailsWithFindings(bad.id)

    def test_a_job_on_a_bad_file_still_being_checked_fails_with_the_findings(self):
        # No wait: the job is made while the checks may still run.
        bad = upload("bad-at-once.jsonl", BAD)
        self.assertJobRefusesOrFailsWithFindings(bad.id)

    def test_a_job_on_a_file_still_being_checked_waits_for_the_checks_then_trains(self):
        f = upload("at-once.jsonl", examples(16, start=200))
        job = create_job(f.id)
        self.addCleanup(cancel_quietly, job.id)
        # Read the job first: if the file is still being checked after
        # that, the job was waiting for it.
        status = API.fine_tuning.jobs.retrieve(job.id).status
        if API.files.retrieve(f.id).status == "uploaded":
            self.assertEqual(status, "validating_files")
        done = wait_job(job.id)
        self.assertEqual(done.status, "succeeded", done.error)

    def test_other_bad_fields_are_400_naming_them(self):
        for param, kw in (
            ("suffix", dict(suffix="x" * 65)),
            ("seed", dict(seed=-1)),
            ("method", dict(method={"type": "dpo"})),
            ("hone", dict(extra_body={"hone": {"no_such_setting": 1}})),
        ):
            with self.subTest(param=param):
                with self.assertRaises(openai.BadRequestError) as ctx:
                    create_job(self.file.id, **kw)
                e = self.assertApiError(ctx, 400)
                self.assertIn(param, e.param or "", e.body)

    def test_malformed_json_is_400_never_500(self):
        for name, body in (
            ("cut short", b'{"model": "hone-demo", "training_file": '),
            ("not an object", b'["hone-demo"]'),
            ("wrong types", json.dumps({"model": 5, "training_file": ["x"]}).encode()),
            ("no training_file", json.dumps({"model": DEMO}).encode()),
            ("method not an object", json.dumps({"model": DEMO, "training_file": self.file.id, "method": "lora"}).encode()),
            ("method.type not a string", json.dumps({"model": DEMO, "training_file": self.file.id, "method": {"type": 5}}).encode()),
            ("hyperparameters not an object", json.dumps({"model": DEMO, "training_file": self.file.id, "method": {
                "type": "supervised", "supervised": {"hyperparameters": "fast"}}}).encode()),
        ):
            with self.subTest(body=name):
                status, got = raw("POST", "/fine_tuning/jobs", body, {"Content-Type": "application/json"})
                if status == 200:  # a job was made after all: not left to run
                    cancel_quietly(json.loads(got)["id"])
                self.assertEqual(status, 400, got[:500])
                self.assertErrorBody(got, status)


if __name__ == "__main__":
    unittest.main(verbosity=2)
