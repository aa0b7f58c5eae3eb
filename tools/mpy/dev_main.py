"""main.py that tools/deploy.py writes to a board: boots the board named in /board.txt.

/board.txt holds the name of a boards/ directory (e.g. rp2040_w5500); its board.py
offers the board class (`Board`, built without arguments: boards/contract.py). The App then runs as on the host (firmware/app.py). The sim board
does not boot from here: the unix port runs boards/sim/run.py (README, Deploying).
"""
import asyncio


def board_class(name):
    """`Board` of boards/<name>/board.py, else its class whose `name` is <name>."""
    mod = __import__("boards.%s.board" % name, None, None, ("board",))
    cls = getattr(mod, "Board", None)
    if isinstance(cls, type):
        return cls
    for v in mod.__dict__.values():
        if isinstance(v, type) and getattr(v, "name", None) == name:
            return v
    raise ValueError("boards/%s/board.py has no class Board" % name)


async def _serve(app):
    await app.start()
    while True:
        await asyncio.sleep(3600)


def main():
    from firmware.app import App
    with open("board.txt") as f:     # the current directory: "/" at boot
        name = f.read().strip()
    app = App(board_class(name)())
    try:
        asyncio.run(_serve(app))
    except KeyboardInterrupt:
        # mpremote (deploy, backup, logs, repl) stops the firmware with Ctrl-C: write
        # a last counter record and the pending events first, as the host run does at
        # a clean stop (the loop is gone: only these two).
        if app.store is not None:
            app.store.close()
            app.evlog.flush()
        print("stopped")


main()
