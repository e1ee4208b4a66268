"""Console: Dead letters. Inbound messages the inbox could not handle (app/integration), with their
reason; one message as it arrived; and, for operators, Replay (run it through its handler again,
once the cause is fixed) and Discard (give up on it, after a confirmation). Both are recorded with
who and when. Plain POST forms, redirected back (PRG)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from app.console import access
from app.integration import dead_letters, inbox
from app.integration.models import DeadLetter

STATUSES = DeadLetter.Status.values


@access.viewer
def dead_letter_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", DeadLetter.Status.PARKED)
    status = status if status in STATUSES else ""
    context = {
        "title": "Dead letters",
        "letters": dead_letters.dead_letter_list(status=status or None),
        "status": status,
        "statuses": STATUSES,
        "counts": dead_letters.by_status(),
        "page": dead_letters.PAGE,
    }
    return render(request, "console/dead_letters.html", context)


@access.viewer
def dead_letter(request: HttpRequest, letter_id: int) -> HttpResponse:
    letter = _found(letter_id)
    context = {
        "title": f"Dead letter {letter.pk}",
        "letter": letter,
        "body": _shown(bytes(letter.body)),
        "headers": json.dumps(letter.headers, indent=2, sort_keys=True, ensure_ascii=False),
    }
    return render(request, "console/dead_letter.html", context)


@require_POST
@access.operator
def dead_letter_replay(request: HttpRequest, letter_id: int) -> HttpResponse:
    _found(letter_id)
    try:
        outcome = inbox.replay(letter_id, user=request.user)
    except dead_letters.NotParked as exc:
        messages.error(request, f"Not replayed: {exc}.")
        return redirect("console:dead_letter", letter_id)
    if outcome == "busy":
        messages.error(request, "Not replayed: the read models are too far behind. Try again in a moment.")
    elif outcome == "failed":
        messages.error(request, "Replayed, and it failed again: it stays parked, with the new reason below.")
    elif outcome == "duplicate":
        messages.success(request, "Replayed: this message had been handled already, so nothing was appended again.")
    else:
        messages.success(request, "Replayed: the message was handled.")
    return redirect("console:dead_letter", letter_id)


@require_POST
@access.operator
def dead_letter_discard(request: HttpRequest, letter_id: int) -> HttpResponse:
    _found(letter_id)
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Not discarded: tick the box to confirm that this message will never be handled.")
        return redirect("console:dead_letter", letter_id)
    try:
        dead_letters.discard(letter_id, user=request.user)
    except dead_letters.NotParked as exc:
        messages.error(request, f"Not discarded: {exc}.")
    else:
        messages.success(request, "Discarded: the message will not be handled.")
    return redirect("console:dead_letter", letter_id)


def _found(letter_id: int) -> DeadLetter:
    letter = dead_letters.dead_letter_get(letter_id)
    if letter is None:
        raise Http404(f"no dead letter {letter_id}")
    return letter


def _shown(body: bytes) -> str:
    """The body as text: indented when it is JSON, else as it came (bytes that are not UTF-8 shown
    as replacement characters)."""
    text = body.decode("utf-8", errors="replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


urlpatterns = [
    path("dead-letters/", dead_letter_list, name="dead_letters"),
    path("dead-letters/<int:letter_id>/", dead_letter, name="dead_letter"),
    path("dead-letters/<int:letter_id>/replay/", dead_letter_replay, name="dead_letter_replay"),
    path("dead-letters/<int:letter_id>/discard/", dead_letter_discard, name="dead_letter_discard"),
]
