"""A process that speaks sentences through libespeak-ng, for the stand-in corpus: the same samples as the
`espeak-ng` command, at about a third of its cost a clip.

The command spends most of a clip's time loading its voice data. This process loads it once, then forks a
child for each sentence. A child starts from the state just after loading, which is the state the command
speaks from; a second sentence spoken in the same process would not be (espeak-ng keeps state from one
utterance to the next), so every sentence gets its own child.

Run by `hw2.q3.ljspeech` with only the standard library (`python -I -S espeak_server.py VOICE`). It answers
`ready` or `unavailable <reason>` on its first line; then, for each request line `[rate, pitch, path, text]`
(JSON), it writes the sentence's 16-bit samples, raw, to `path` and answers `0`, or another status.
"""
import ctypes
import ctypes.util
import json
import os
import signal
import sys

SAMPLE_RATE = 22050
AUDIO_OUTPUT_SYNCHRONOUS = 2
RATE, PITCH = 1, 3  # espeak_PARAMETER
POS_CHARACTER = 1
# The command's own flags: characters detected (UTF-8 here), [[phonemes]] read, a pause at the end.
CHARS_AUTO, PHONEMES, ENDPAUSE = 0, 0x100, 0x1000


def load(voice: bytes):
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    lib = ctypes.CDLL(name)
    if lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0) != SAMPLE_RATE:
        raise OSError(f"{name} did not start at {SAMPLE_RATE} Hz")
    if lib.espeak_SetVoiceByName(voice) != 0:
        raise OSError(f"{name} has no voice {voice.decode()}")
    return lib


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the generation, which then closes our stdin
    try:
        if not hasattr(os, "fork"):
            raise OSError("this system has no fork")
        lib = load(sys.argv[1].encode())
    except (OSError, AttributeError) as err:
        print(f"unavailable {err}", flush=True)
        return
    chunks = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def collect(wav, n, events):
        if n > 0:
            chunks.append(ctypes.string_at(wav, 2 * n))
        return 0

    callback = callback_type(collect)
    lib.espeak_SetSynthCallback(callback)
    print("ready", flush=True)
    for line in sys.stdin:
        rate, pitch, path, text = json.loads(line)
        pid = os.fork()
        if pid == 0:
            status = 3
            try:
                lib.espeak_SetParameter(RATE, rate, 0)
                lib.espeak_SetParameter(PITCH, pitch, 0)
                data = text.encode("utf-8") + b"\0"
                status = (lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_AUTO | PHONEMES | ENDPAUSE,
                                           None, None) or lib.espeak_Synchronize())
                with open(path, "wb") as out:
                    out.write(b"".join(chunks))
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    main()
