"""Test helper: small LibriTTS-shaped archives and a local HTTP server that serves them.

    archives = build_libritts_archives(tmp_path / "src", {
        "train-clean-100": {"19": ("F", 3), "26": ("M", 2)},
        "test-clean": {"121": ("F", 2), "237": ("M", 2)},
    })
    with serve_directory(tmp_path / "src") as server:
        server.base_url            # http://127.0.0.1:<port>
        server.bytes_sent          # {"/train-clean-100.tar.gz": n, ...} body bytes sent
        server.requests            # [(path, range header or None, status), ...]

Archives follow the real layout: `LibriTTS/{SPEAKERS.txt,speakers.tsv,...}` and
`LibriTTS/<subset>/<spk>/<chap>/<spk>_<chap>_<para>_<sent>.{wav,normalized.txt,original.txt}`
with 24 kHz mono 16-bit wavs: a sine (about 210 Hz for F, 120 Hz for M, varying per speaker)
plus a little noise. SPEAKERS.txt carries LibriTTS's traps: `;` comments, padded `|` fields,
blank lines, speaker 60 named `|CBW|Simon`, and a speaker listed for the subset with no audio.
A speaker given sex None has audio but no metadata row.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE_HZ = 24_000

SPEAKERS_HEADER = """\
; Some of the speakers are listed in more than one subset, or in none at all
;
; Names are as they appear in the LibriVox catalogue. ID is the LibriSpeech reader ID.
;ID  |SEX| SUBSET           |MINUTES| NAME
"""
# Metadata-only rows: speaker 60 (pipes in its name) and a speaker "listed" for every
# subset but without any audio (LibriTTS's metadata says 251 for train-clean-100, audio 247).
GHOST_SPEAKER = "9999"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def make_wav(
    sex: str | None,
    speaker: str,
    utt: int,
    *,
    seconds: float = 0.25,
    sample_rate: int = SAMPLE_RATE_HZ,
    fmt: str = "WAV",
    channels: int = 1,
) -> bytes:
    """A short tone + noise, pitched by sex, as WAV (or FLAC) bytes."""
    rng = np.random.default_rng(int(speaker) * 1000 + utt if speaker.isdigit() else utt)
    base = {"F": 210.0, "M": 120.0}.get(sex or "", 160.0)
    f0 = base * (1 + 0.1 * ((int(speaker) if speaker.isdigit() else 0) % 7 - 3) / 3)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(4 * np.pi * f0 * t)
    x = x + 0.01 * rng.standard_normal(t.size)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sample_rate, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def speakers_txt(rows: list[tuple[str, str, str, float, str]]) -> str:
    """SPEAKERS.txt text (with the traps) for (id, sex, subset, minutes, name) rows."""
    lines = [SPEAKERS_HEADER]
    for spk, sex, subset, minutes, name in rows:
        lines.append(f"{spk:<5}| {sex} | {subset:<16} | {minutes:5.2f} | {name}\n")
        if spk.endswith("3"):
            lines.append("\n")  # stray blank lines occur
    return "".join(lines)


def speakers_tsv(rows: list[tuple[str, str, str, float, str]]) -> str:
    """speakers.tsv text: malformed header (extra column), some rows without NAME."""
    lines = ["READER\tGENDER\tSUBSET\tNAME\tMINUTES\n"]
    for i, (spk, sex, subset, _, name) in enumerate(rows):
        lines.append(f"{spk}\t{sex}\t{subset}\n" if i % 3 == 1 else f"{spk}\t{sex}\t{subset}\t{name}\n")
    return "".join(lines)


def _add(tf: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 1_600_000_000  # fixed, so archives are byte-identical across builds
    tf.addfile(info, io.BytesIO(data))


def _add_dir(tf: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 1_600_000_000
    tf.addfile(info)


def build_libritts_archives(
    out_dir: Path,
    subsets: dict[str, dict[str, tuple[str | None, int]]],
    *,
    seconds: float = 0.25,
    sample_rate: int = SAMPLE_RATE_HZ,
    chapters_per_speaker: int = 1,
    speakers_txt_text: str | None = None,
    include_speakers_txt: bool = True,
    include_speakers_tsv: bool = True,
) -> dict[str, Path]:
    """Write `<out_dir>/<subset>.tar.gz` for each subset; return subset -> path.

    `subsets[subset][speaker] = (sex "F"/"M" or None for no metadata row, n_utterances)`.
    Every archive carries the same root metadata listing all speakers (as LibriTTS does),
    plus speaker 60 (`|CBW|Simon`) and GHOST_SPEAKER, who have no audio.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [("60", "M", "train-clean-100", 20.18, "|CBW|Simon")]
    for subset, speakers in subsets.items():
        for spk, (sex, n) in speakers.items():
            if sex is not None:
                rows.append((spk, sex, subset, round(n * seconds / 60, 2), f"Reader {spk}"))
        rows.append((GHOST_SPEAKER, "F", subset, 12.5, "Ghost Reader"))
    text = speakers_txt_text if speakers_txt_text is not None else speakers_txt(rows)
    out = {}
    for subset, speakers in subsets.items():
        path = out_dir / f"{subset}.tar.gz"
        with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tf:
            _add_dir(tf, "LibriTTS")
            if include_speakers_txt:
                _add(tf, "LibriTTS/SPEAKERS.txt", text.encode())
            if include_speakers_tsv:
                _add(tf, "LibriTTS/speakers.tsv", speakers_tsv(rows).encode())
            _add(
                tf, "LibriTTS/CHAPTERS.txt", b";ID |READER|MINUTES| SUBSET | PROJ.|BOOK ID| CH. TITLE | PROJECT TITLE\n"
            )
            _add(tf, "LibriTTS/README_libritts.txt", b"LibriTTS-shaped test fixture\n")
            _add_dir(tf, f"LibriTTS/{subset}")
            for spk, (sex, n) in speakers.items():
                _add_dir(tf, f"LibriTTS/{subset}/{spk}")
                for c in range(chapters_per_speaker):
                    chap = str(1000 + int(spk) * 10 + c) if spk.isdigit() else str(1000 + c)
                    d = f"LibriTTS/{subset}/{spk}/{chap}"
                    _add_dir(tf, d)
                    trans = []
                    for u in range(n):
                        uid = f"{spk}_{chap}_{u:06d}_000000"
                        _add(
                            tf,
                            f"{d}/{uid}.wav",
                            make_wav(sex, spk, c * 1000 + u, seconds=seconds, sample_rate=sample_rate),
                        )
                        _add(tf, f"{d}/{uid}.normalized.txt", f"Utterance {u}.".encode())
                        _add(tf, f"{d}/{uid}.original.txt", f"utterance {u}".encode())
                        trans.append(f"{uid}\tutterance {u}\tUtterance {u}.\n")
                    _add(tf, f"{d}/{spk}_{chap}.trans.tsv", "".join(trans).encode())
                    _add(tf, f"{d}/{spk}_{chap}.book.tsv", "".join(trans).encode())
        out[subset] = path
    return out


def write_tar_gz(
    path: Path,
    members: dict[str, bytes],
    *,
    symlinks: dict[str, str] | None = None,
    hardlinks: dict[str, str] | None = None,
) -> Path:
    """A tar.gz with exactly these members (names used verbatim, e.g. '../x' or '/abs')."""
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tf:
        for name, data in members.items():
            _add(tf, name, data)
        for kind, links in ((tarfile.SYMTYPE, symlinks or {}), (tarfile.LNKTYPE, hardlinks or {})):
            for name, target in links.items():
                info = tarfile.TarInfo(name)
                info.type = kind
                info.linkname = target
                info.mtime = 1_600_000_000
                tf.addfile(info)
    return Path(path)


class FixtureServer:
    """A threaded HTTP server on 127.0.0.1 serving one directory, with Range support.

    Knobs (attributes, may be changed while serving):
      cut_after_bytes: close the connection after sending this many body bytes ...
      cut_times:       ... for this many responses (then serve normally); default 1
      fail_times:      answer `fail_status` (default 503) to this many requests first
      ignore_range:    answer 200 with the whole file to Range requests
    Counters: `bytes_sent[url_path]` (body bytes actually written) and `requests`,
    a list of (url_path, Range header or None, status).
    """

    def __init__(
        self,
        root: Path,
        *,
        cut_after_bytes: int | None = None,
        cut_times: int = 1,
        fail_times: int = 0,
        fail_status: int = 503,
        ignore_range: bool = False,
    ):
        self.root = Path(root).resolve()
        self.cut_after_bytes = cut_after_bytes
        self.cut_times = cut_times
        self.fail_times = fail_times
        self.fail_status = fail_status
        self.ignore_range = ignore_range
        self._bytes_sent: dict[str, int] = {}
        self._requests: list[tuple[str, str | None, int]] = []
        self._in_flight = 0
        self._lock = threading.Condition()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        # a short poll interval makes stop() quick (the default 0.5 s adds up over many tests)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def wait_idle(self, timeout_s: float = 5.0) -> None:
        """Wait until no response is being sent (the client may finish reading first)."""
        with self._lock:
            self._lock.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)

    @property
    def bytes_sent(self) -> dict[str, int]:
        """url path -> body bytes written, once all responses are finished."""
        self.wait_idle()
        with self._lock:
            return dict(self._bytes_sent)

    @property
    def requests(self) -> list[tuple[str, str | None, int]]:
        """(url path, Range header or None, status) per request, once all are finished."""
        self.wait_idle()
        with self._lock:
            return list(self._requests)

    def start(self) -> "FixtureServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _record(self, status: int) -> None:
                with server._lock:
                    server._requests.append((self.path, self.headers.get("Range"), status))

            def do_HEAD(self):
                self._counted(body=False)

            def do_GET(self):
                self._counted(body=True)

            def _counted(self, body: bool) -> None:
                with server._lock:
                    server._in_flight += 1
                try:
                    self._serve(body)
                finally:
                    with server._lock:
                        server._in_flight -= 1
                        server._lock.notify_all()

            def _serve(self, body: bool) -> None:
                with server._lock:
                    fail = server.fail_times > 0
                    if fail:
                        server.fail_times -= 1
                if fail:
                    self._record(server.fail_status)
                    self.send_error(server.fail_status, "simulated transient failure")
                    return
                rel = self.path.split("?", 1)[0].lstrip("/")
                path = (server.root / rel).resolve()
                if server.root not in path.parents or not path.is_file():
                    self._record(404)
                    self.send_error(404)
                    return
                size = path.stat().st_size
                start, end, status = 0, size - 1, 200
                rng = self.headers.get("Range")
                if rng and not server.ignore_range:
                    m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
                    if not m or (m.group(1) == "" and m.group(2) == ""):
                        self._record(400)
                        self.send_error(400, "bad Range")
                        return
                    if m.group(1) == "":  # suffix range: last N bytes
                        start = max(size - int(m.group(2)), 0)
                    else:
                        start = int(m.group(1))
                        if m.group(2):
                            end = min(int(m.group(2)), size - 1)
                    if start >= size or start > end:
                        self._record(416)
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                length = end - start + 1
                self._record(status)
                self.send_response(status)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if not body:
                    return
                with server._lock:
                    cut = server.cut_after_bytes if server.cut_times > 0 else None
                    if cut is not None:
                        server.cut_times -= 1
                limit = length if cut is None else min(cut, length)
                sent = 0
                with open(path, "rb") as f:
                    f.seek(start)
                    while sent < limit:
                        chunk = f.read(min(64 * 1024, limit - sent))
                        if not chunk:
                            break
                        try:
                            self.wfile.write(chunk)
                        except OSError:
                            break
                        sent += len(chunk)
                        with server._lock:
                            server._bytes_sent[self.path] = server._bytes_sent.get(self.path, 0) + len(chunk)
                if cut is not None and sent < length:
                    # Simulate a dropped connection: flush what was sent, then hang up.
                    self.wfile.flush()
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True

        return Handler


@contextlib.contextmanager
def serve_directory(root: Path, cut_after_bytes: int | None = None, **knobs):
    """Serve `root` on 127.0.0.1 (random port) in a thread; yields a FixtureServer.

    Use `server.base_url` as `data.libritts.base_url`. See FixtureServer for the knobs.
    """
    server = FixtureServer(root, cut_after_bytes=cut_after_bytes, **knobs).start()
    try:
        yield server
    finally:
        server.stop()
