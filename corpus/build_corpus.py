"""Build the larger English pretraining corpus: ../shared/data/corpus.txt.xz plus real prose from Debian packages.

    bash corpus/build.sh OUT            # downloads the pinned packages, then runs this
    python3 corpus/build_corpus.py --debs DIR --base CORPUS.txt.xz --out OUT

Every source is a row of SOURCES: the Debian package and its exact version (so a rebuild reads the same bytes:
build.sh checks each .deb's SHA-256 against corpus/manifest.json), what is taken from it, how it is read, and the
licence of that text. Output, in OUT: corpus.txt (one paragraph per line, a blank line between documents, the
format of `albert data prepare`), stats.json (documents, lines and words per source), and the SHA-256 of
corpus.txt. Lines are deduplicated exactly (after whitespace normalisation) across the whole corpus, the base
corpus first; a document left empty is dropped. Nothing here is from the evaluation tasks' sources (product
reviews, WordNet, e-mail). Standard library only, plus Debian's diatheke (SWORD modules) and groff (man pages).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import json
import lzma
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract import html_paragraphs, norm, prose  # noqa: E402

Document = list[str]


@dataclass(frozen=True)
class Source:
    name: str
    package: str
    version: str
    licence: str
    read: str  # html | sword | dictd | vimhelp | man
    paths: tuple[str, ...] = ()  # globs inside the unpacked package (html, vimhelp, man, dictd)
    module: str = ""  # sword: module name and key range
    keys: str = ""
    what: str = ""
    exclude: tuple[str, ...] = ()  # path substrings skipped


DOC = "usr/share/doc"
# Sphinx sites: highlighted source, indexes and search pages are not prose
SPHINX_NOISE = ("/_modules/", "/_sources/", "/genindex", "/py-modindex", "/search.html", "/_static/")
SOURCES: tuple[Source, ...] = (
    Source("treasury_of_david", "sword-comm-tdavid", "2.1-1", "public domain", "sword", module="TDavid",
           keys="Ps 1:1-150:6", what="C. H. Spurgeon, The Treasury of David (1869-1885), a commentary on the Psalms"),
    Source("scofield_notes", "sword-comm-scofield", "2.1-1", "public domain", "sword", module="Scofield",
           keys="Gen 1:1-Rev 22:21", what="Scofield Reference Notes (1917 edition)"),
    Source("foldoc", "dict-foldoc", "20230119-1", "GFDL-1.1-or-later", "dictd",
           ("usr/share/dictd/foldoc.dict.dz",), what="The Free On-line Dictionary of Computing"),
    Source("debian_handbook", "debian-handbook", "11.20220922", "GPL-2.0-or-later or CC-BY-SA-3.0", "html",
           (f"{DOC}/debian-handbook/html/en-US/*.html",), what="The Debian Administrator's Handbook"),
    Source("apache_docs", "apache2-doc", "2.4.71-1~deb12u1", "Apache-2.0", "html",
           (f"{DOC}/apache2-doc/manual/en/**/*.html",), what="Apache HTTP Server documentation"),
    Source("sqlite_docs", "sqlite3-doc", "3.40.1-2+deb12u2", "public domain", "html",
           (f"{DOC}/sqlite3/**/*.html",), what="SQLite documentation"),
    Source("git_docs", "git-doc", "1:2.39.5-0+deb12u3", "GPL-2.0-only", "html",
           (f"{DOC}/git/**/*.html",), what="Git manual pages and guides"),
    Source("django_docs", "python-django-doc", "3:3.2.25-0+deb12u7", "BSD-3-Clause", "html",
           (f"{DOC}/python-django-doc/html/**/*.html",), exclude=("/_modules/", "/genindex", "/py-modindex"),
           what="Django documentation"),
    Source("libreoffice_help", "libreoffice-help-en-us", "4:7.4.7-1+deb12u14", "MPL-2.0", "html",
           ("usr/share/libreoffice/help/en-US/**/*.html",), what="LibreOffice help (en-US)"),
    Source("nodejs_docs", "nodejs-doc", "18.20.4+dfsg-1~deb12u3", "MIT", "html",
           (f"{DOC}/nodejs/api/*.html",), exclude=("/all.html",), what="Node.js API documentation"),
    Source("gimp_help", "gimp-help-en", "2.10.34-2", "GFDL-1.2", "html",
           ("usr/share/gimp/2.0/help/en/**/*.html",), what="GIMP user manual (en)"),
    Source("gnucash_docs", "gnucash-docs", "4.13-1", "GFDL-1.1-or-later", "html",
           (f"{DOC}/gnucash-docs/gnucash-guide-en/**/*.html", f"{DOC}/gnucash-docs/gnucash-help-en/**/*.html",
            f"{DOC}/gnucash-docs/C/**/*.html"), what="GnuCash tutorial, concepts guide and help (en)"),
    Source("vim_help", "vim-runtime", "2:9.0.1378-2+deb12u2", "Vim", "vimhelp",
           ("usr/share/vim/vim90/doc/*.txt",), what="Vim's help files"),
    Source("man_pages", "manpages", "6.03-2", "Linux-man-pages-copyleft and GPL", "man",
           ("usr/share/man/man*/*.gz",), what="Linux man-pages (sections 1-8)"),
    Source("man_pages_dev", "manpages-dev", "6.03-2", "Linux-man-pages-copyleft and GPL", "man",
           ("usr/share/man/man*/*.gz",), what="Linux man-pages (system calls and library functions)"),
    Source("erlang_docs", "erlang-doc", "1:25.2.3+dfsg-1+deb12u4", "Apache-2.0", "html",
           (f"{DOC}/erlang-doc/**/*.html",), what="Erlang/OTP documentation"),
    Source("rust_docs", "rust-doc", "1.63.0+dfsg1-2", "MIT or Apache-2.0", "html",
           (f"{DOC}/rust-doc/html/**/*.html",), exclude=("/src/",),
           what="The Rust book, reference, nomicon, Rust by Example, standard library documentation"),
    Source("sqlalchemy_docs", "python-sqlalchemy-doc", "1.4.46+ds1-1", "MIT", "html",
           (f"{DOC}/python-sqlalchemy-doc/html/**/*.html",), exclude=SPHINX_NOISE, what="SQLAlchemy documentation"),
    Source("statsmodels_docs", "python-statsmodels-doc", "0.13.5+dfsg-7", "BSD-3-Clause", "html",
           (f"{DOC}/python-statsmodels-doc/html/**/*.html",), exclude=SPHINX_NOISE,
           what="statsmodels documentation"),
    Source("sklearn_docs", "python-sklearn-doc", "1.2.1+dfsg-1", "BSD-3-Clause", "html",
           (f"{DOC}/python-sklearn-doc/html/**/*.html",), exclude=SPHINX_NOISE, what="scikit-learn user guide"),
    Source("scipy_docs", "python-scipy-doc", "1.10.1-2", "BSD-3-Clause", "html",
           (f"{DOC}/python-scipy-doc/html/**/*.html",), exclude=SPHINX_NOISE, what="SciPy documentation"),
    Source("pandas_docs", "python-pandas-doc", "1.5.3+dfsg-2", "BSD-3-Clause", "html",
           (f"{DOC}/python-pandas-doc/html/**/*.html",), exclude=SPHINX_NOISE, what="pandas documentation"),
    Source("astropy_docs", "python-astropy-doc", "5.2.1-2+deb12u1", "BSD-3-Clause", "html",
           (f"{DOC}/python-astropy-doc/html/**/*.html",), exclude=SPHINX_NOISE, what="Astropy documentation"),
    Source("sympy_docs", "python-sympy-doc", "1.11.1-1", "BSD-3-Clause", "html",
           (f"{DOC}/python-sympy-doc/html/**/*.html",), exclude=SPHINX_NOISE, what="SymPy documentation"),
    Source("sphinx_docs", "sphinx-doc", "5.3.0-4", "BSD-2-Clause", "html",
           (f"{DOC}/sphinx-doc/html/**/*.html",), exclude=SPHINX_NOISE, what="Sphinx documentation"),
    Source("biopython_tutorial", "python-biopython-doc", "1.80+dfsg-4", "Biopython License (BSD-3-Clause style)",
           "html", (f"{DOC}/python-biopython-doc/Doc/Tutorial.html",), what="Biopython tutorial and cookbook"),
    Source("maxima_manual", "maxima-doc", "5.46.0-11", "GPL-2.0-only", "html",
           (f"{DOC}/maxima-doc/html/*.html",), what="Maxima manual"),
    Source("octave_manual", "octave-doc", "7.3.0-2", "GPL-3.0-or-later", "html",
           ("usr/share/doc/octave/octave.html/*.html",), what="GNU Octave manual"),
    Source("r_manuals", "r-doc-html", "4.2.2.20221110-2", "GPL-2.0-only", "html",
           ("usr/share/R/doc/manual/*.html",), what="The R manuals (introduction, language, data import, ...)"),
    Source("java_api_docs", "openjdk-17-doc", "17.0.21.1+2-1~deb12u1", "GPL-2.0 with the Classpath exception",
           "html", (f"{DOC}/openjdk-17-jre-headless/api/**/*.html", f"{DOC}/openjdk-17-jre-headless/specs/**/*.html"),
           exclude=("/class-use/", "/index-files/", "-tree.html", "allclasses", "allpackages", "/legal/"),
           what="Java SE 17 API documentation and specifications"),
    Source("debian_policy", "debian-policy", "4.6.2.0", "GPL-2.0-or-later", "html",
           (f"{DOC}/debian-policy/**/*.html",), what="Debian Policy Manual"),
    Source("developers_reference", "developers-reference", "12.18", "GPL-2.0-only", "html",
           ("usr/share/developers-reference/*.html",), what="Debian Developer's Reference"),
)


# ----- readers: each yields documents (lists of paragraphs) -----
def read_html(root: Path, s: Source) -> Iterator[Document]:
    for path in _files(root, s):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            text = path.read_text(encoding="latin-1")
        yield html_paragraphs(text)


def read_sword(root: Path, s: Source) -> Iterator[Document]:
    """A SWORD commentary dumped by diatheke: one document per chapter (its key prefix), one paragraph per line."""
    env = {**os.environ, "SWORD_PATH": str(root / "usr/share/sword")}
    out = subprocess.run(["diatheke", "-b", s.module, "-f", "plain", "-k", s.keys], env=env, capture_output=True,
                         text=True, check=True).stdout
    doc: Document = []
    chapter = None
    key = re.compile(r"^([1-3]? ?[A-Z][a-z]+ \d+):\d+: ?")
    for line in out.splitlines():
        m = key.match(line)
        if m:
            if m.group(1) != chapter and doc:
                yield doc
                doc = []
            chapter = m.group(1)
            line = line[m.end():]
        line = line.replace("*", " ")
        if line.strip() and not line.startswith("(" + s.module + ")"):
            doc.append(line)
    if doc:
        yield doc


def read_dictd(root: Path, s: Source) -> Iterator[Document]:
    """A dictd dictionary (.dict.dz is gzip): one document per entry, its paragraphs joined from wrapped lines."""
    for path in _files(root, s):
        data = gzip.decompress(path.read_bytes())
        index = path.with_name(path.name.removesuffix(".dict.dz") + ".index").read_text(encoding="utf-8")
        for line in index.splitlines():
            parts = line.split("\t")
            if len(parts) < 3 or parts[0].startswith("00-database"):
                continue
            start, length = _b64(parts[1]), _b64(parts[2])
            entry = data[start:start + length].decode("utf-8", "replace")
            yield [re.sub(r"[{}]", "", p) for p in _paragraphs(entry.split("\n", 1)[-1])]


def read_vimhelp(root: Path, s: Source) -> Iterator[Document]:
    for path in _files(root, s):
        text = path.read_text(encoding="utf-8", errors="replace")
        text = re.sub(r"\*[^*\s]+\*|\|([^|\s]+)\|", lambda m: m.group(1) or "", text)  # tags; links keep their word
        text = re.sub(r"(?m)^.*(~|={5,}|-{5,})\s*$", "", text)  # headings and rules
        yield list(_paragraphs(text))


def read_man(root: Path, s: Source) -> Iterator[Document]:
    """Man pages rendered by groff on a very wide line, so a paragraph is one line."""
    for path in _files(root, s):
        source = gzip.decompress(path.read_bytes())
        if source.startswith(b".so "):  # an alias of another page
            continue
        out = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", "-rLL=20000n", "-rcR=1"], input=source,
                             capture_output=True, check=False).stdout.decode("utf-8", "replace")
        yield [line for line in out.splitlines() if line.startswith("       ") and not line.startswith("        ")]


READERS: dict[str, Callable[[Path, Source], Iterator[Document]]] = {
    "html": read_html, "sword": read_sword, "dictd": read_dictd, "vimhelp": read_vimhelp, "man": read_man}


def _files(root: Path, s: Source) -> list[Path]:
    found = {Path(p) for pattern in s.paths for p in glob.glob(str(root / pattern), recursive=True)}
    return sorted(p for p in found if p.is_file() and not any(x in str(p) for x in s.exclude))


def _paragraphs(text: str) -> Iterator[str]:
    for block in re.split(r"\n\s*\n", text):
        paragraph = " ".join(line.strip() for line in block.splitlines() if line.strip())
        if paragraph:
            yield paragraph


def _b64(text: str) -> int:
    """dictd's index numbers: base64 digits, most significant first."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    value = 0
    for c in text:
        value = value * 64 + alphabet.index(c)
    return value


# ----- the build -----
class Writer:
    """Writes documents to corpus.txt, dropping lines seen before anywhere in the corpus."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "w", encoding="utf-8", newline="\n")
        self.seen: set[bytes] = set()

    def write(self, docs: Iterable[Document], keep: Callable[[str], bool]) -> dict[str, int]:
        stats = {"documents": 0, "lines": 0, "words": 0, "duplicate_lines": 0}
        for doc in docs:
            lines = []
            for raw in doc:
                line = norm(raw)
                if not line or not keep(line):
                    continue
                digest = hashlib.blake2b(line.encode(), digest_size=12).digest()
                if digest in self.seen:
                    stats["duplicate_lines"] += 1
                    continue
                self.seen.add(digest)
                lines.append(line)
            if lines:
                self.file.write("\n".join(lines) + "\n\n")
                stats["documents"] += 1
                stats["lines"] += len(lines)
                stats["words"] += sum(len(line.split()) for line in lines)
        return stats

    def close(self) -> None:
        self.file.close()


def base_documents(path: Path) -> Iterator[Document]:
    doc: Document = []
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                doc.append(line)
            elif doc:
                yield doc
                doc = []
    if doc:
        yield doc


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


MANIFEST = Path(__file__).resolve().parent / "manifest.json"


def check(kind: str, found: dict[str, str], record: bool) -> None:
    """Compare SHA-256s with the manifest's (or, with --record, write them there)."""
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {}
    if record:
        manifest[kind] = found
        MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        return
    expected = manifest.get(kind, {})
    wrong = [f"{k}: {v[:12]}… but the manifest has {expected.get(k, 'nothing')[:12]}…" for k, v in found.items()
             if expected.get(k) != v]
    if wrong:
        sys.exit(f"build_corpus: {kind} differ from corpus/manifest.json:\n  " + "\n  ".join(wrong))
    print(f"{kind}: all {len(found)} match corpus/manifest.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debs", help="directory of the unpacked packages, one folder per package name")
    ap.add_argument("--base", help="the base corpus (../shared/data/corpus.txt.xz)")
    ap.add_argument("--out")
    ap.add_argument("--packages", action="store_true", help="print package=version per line, for build.sh")
    ap.add_argument("--check-debs", metavar="DIR", help="check the downloaded .deb files against the manifest")
    ap.add_argument("--check-corpus", metavar="OUT", help="check a built corpus against the manifest")
    ap.add_argument("--record", action="store_true", help="with a check: write the manifest instead")
    a = ap.parse_args()
    if a.packages:
        print("\n".join(sorted({f"{s.package}={s.version}" for s in SOURCES})))
        return
    if a.check_debs:
        debs = {}
        for package in sorted({s.package for s in SOURCES}):
            files = sorted(Path(a.check_debs).glob(f"{package}_*.deb"))
            if len(files) != 1:
                sys.exit(f"build_corpus: expected one {package}_*.deb in {a.check_debs}, found {len(files)}")
            debs[files[0].name] = sha256(files[0])
        check("debs", debs, a.record)
        return
    if a.check_corpus:
        total = json.loads((Path(a.check_corpus) / "stats.json").read_text())["total"]
        check("corpus", {"corpus.txt": total["sha256"]}, a.record)
        return
    if not (a.debs and a.base and a.out):
        ap.error("--debs, --base and --out are required")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    writer = Writer(out / "corpus.txt")
    stats: dict[str, dict] = {}
    read = {"words": 0}

    def counted(docs: Iterator[Document]) -> Iterator[Document]:  # the base's words before deduplication
        for doc in docs:
            read["words"] += sum(len(line.split()) for line in doc)
            yield doc

    written = writer.write(counted(base_documents(Path(a.base))), keep=lambda line: True)
    base_words = read["words"]
    stats["base"] = {"what": Path(a.base).name, "words_before_deduplication": base_words, **written}
    print(f"base: {stats['base']['words']:,} words", flush=True)
    for s in SOURCES:
        docs = READERS[s.read](Path(a.debs) / s.package, s)
        stats[s.name] = {"package": f"{s.package} {s.version}", "licence": s.licence, "what": s.what,
                         **writer.write(docs, keep=prose)}
        print(f"{s.name}: {stats[s.name]['words']:,} words", flush=True)
    writer.close()
    added = sum(v["words"] for k, v in stats.items() if k != "base")
    total = {"words": stats["base"]["words"] + added, "added_words": added,
             "times_base": round((stats["base"]["words"] + added) / base_words, 3),
             "sha256": sha256(out / "corpus.txt"), "bytes": (out / "corpus.txt").stat().st_size}
    (out / "stats.json").write_text(json.dumps({"sources": stats, "total": total}, indent=1) + "\n")
    print(json.dumps(total))


if __name__ == "__main__":
    main()
