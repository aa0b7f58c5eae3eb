"""Fetch one pinned source distribution from the package index pip uses, check it, and
unpack members of it (for MicroPython packages whose sdist pip cannot install: they
carry no setup.py).

    python tools/fetch_sdist.py micropython-umqtt.simple 1.3.4 SHA256 \
        umqtt/simple.py lib/umqtt/simple.py

The index is pip's own (PIP_INDEX_URL, else pip's default), read through its "simple"
repository API (PEP 503): the file is found by name and version, downloaded, and
refused unless its sha256 matches the pinned one. Members are copied unmodified.
"""
import hashlib
import io
import os
import re
import sys
import tarfile
import urllib.parse
import urllib.request


def index_url():
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        from pip._internal.models.index import PyPI   # pip's default index
        url = PyPI.simple_url
    return url.rstrip("/")


def find(name, version):
    norm = re.sub(r"[-_.]+", "-", name).lower()             # PEP 503 normalised name
    page_url = "%s/%s/" % (index_url(), norm)
    with urllib.request.urlopen(page_url, timeout=60) as r:
        page = r.read().decode()
    want = "%s-%s.tar.gz" % (name, version)
    for href in re.findall(r'href="([^"]+)"', page):
        if urllib.parse.urlsplit(href).path.endswith("/" + want):
            return urllib.parse.urljoin(page_url, href)
    raise SystemExit("fetch_sdist: %s not listed at the index for %s" % (want, name))


def main(argv):
    if len(argv) < 6 or (len(argv) - 4) % 2:
        raise SystemExit(__doc__)
    name, version, sha = argv[1:4]
    url = find(name, version)
    with urllib.request.urlopen(url, timeout=120) as r:
        data = r.read()
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        raise SystemExit("fetch_sdist: sha256 of %s is %s, pinned %s" % (name, got, sha))
    prefix = "%s-%s/" % (name, version)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member, dest in zip(argv[4::2], argv[5::2]):
            f = tar.extractfile(prefix + member)
            if f is None:
                raise SystemExit("fetch_sdist: %s has no %s" % (name, member))
            os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
            with open(dest, "wb") as out:
                out.write(f.read())
            print("fetch_sdist: %s %s: %s -> %s" % (name, version, member, dest))


if __name__ == "__main__":
    main(sys.argv)
