"""A clinic's first booking, through the Python client generated from openapi/harmony.json.

    python scenario.py BASE_URL

Signs up a clinic, invites a professional who accepts, sets her working hours, adds a
service and a patient, finds a free time, books it, reschedules it and cancels it. Every
step goes through the generated client (openapi-python-client, generated into
openapi/clients/harmony_client by scripts/api-checks); any unexpected answer fails.
"""

import datetime
import sys
import uuid

from harmony_client import AuthenticatedClient, Client
from harmony_client.api.agenda import (
    book_appointment,
    cancel_appointment,
    create_service,
    get_appointment,
    get_availability,
    reschedule_appointment,
    set_working_hours,
)
from harmony_client.api.auth import accept_invitation, signup
from harmony_client.api.clinic import invite_member
from harmony_client.api.patients import create_patient
from harmony_client.models import (
    AcceptInvitationRequest,
    Cancellation,
    InviteMember,
    NewAppointment,
    NewClinic,
    NewOwner,
    NewPatient,
    NewService,
    Reschedule,
    Role,
    SignupRequest,
    WorkingHoursUpdate,
    WorkingInterval,
)


def expect(response, status, what):
    """The parsed body of `response`, which must have `status`."""
    if response.status_code != status:
        sys.exit(f"python scenario: {what}: {response.status_code} {response.content!r}")
    return response.parsed


def main(base):
    run = uuid.uuid4().hex[:8]
    anonymous = Client(base_url=base)
    signed_up = expect(
        signup.sync_detailed(
            client=anonymous,
            body=SignupRequest(
                clinic=NewClinic(name=f"Clínica Python {run}"),
                owner=NewOwner(
                    name="Dona Python",
                    email=f"dona-{run}@python.test",
                    password="uma senha bem longa",
                ),
            ),
        ),
        201,
        "sign up",
    )
    owner = AuthenticatedClient(base_url=base, token=signed_up.tokens.access_token)

    invited = expect(
        invite_member.sync_detailed(
            client=owner,
            body=InviteMember(
                email=f"pro-{run}@python.test", name="Dra. Python", roles=[Role.PROFESSIONAL]
            ),
        ),
        201,
        "invite a professional",
    )
    expect(
        accept_invitation.sync_detailed(
            client=anonymous,
            body=AcceptInvitationRequest(
                token=invited.invitation_token, password="outra senha bem longa"
            ),
        ),
        200,
        "accept the invitation",
    )
    professional = invited.member.user_id

    week = [
        WorkingInterval(weekday=day, starts_at="08:00", ends_at="18:00") for day in range(1, 7)
    ]
    expect(
        set_working_hours.sync_detailed(
            professional, client=owner, body=WorkingHoursUpdate(intervals=week)
        ),
        200,
        "set working hours",
    )
    service = expect(
        create_service.sync_detailed(
            client=owner,
            body=NewService(
                name="Limpeza de pele",
                category="facial",
                duration_minutes=60,
                price_cents=18000,
                professional_ids=[professional],
            ),
        ),
        201,
        "add a service",
    )
    patient = expect(
        create_patient.sync_detailed(
            client=owner,
            body=NewPatient(full_name="Renata Pythonista", phone="+55 11 97777-1234"),
        ),
        201,
        "register a patient",
    )

    today = datetime.date.today()
    free = expect(
        get_availability.sync_detailed(
            client=owner,
            service_ids=str(service.id),
            from_=(today + datetime.timedelta(days=2)).isoformat(),
            to=(today + datetime.timedelta(days=16)).isoformat(),
            professional_id=professional,
        ),
        200,
        "find availability",
    )
    if len(free.slots) < 2:
        sys.exit(f"python scenario: expected free times, got {len(free.slots)}")
    first, later = free.slots[0], free.slots[-1]

    booked = expect(
        book_appointment.sync_detailed(
            client=owner,
            body=NewAppointment(
                patient_id=patient.id,
                service_ids=[service.id],
                professional_id=professional,
                start=first.start.isoformat(),
            ),
        ),
        201,
        "book",
    )
    moved = expect(
        reschedule_appointment.sync_detailed(
            booked.id, client=owner, body=Reschedule(start=later.start.isoformat())
        ),
        200,
        "reschedule",
    )
    if moved.start != later.start:
        sys.exit(f"python scenario: rescheduled to {moved.start}, asked {later.start}")
    expect(
        cancel_appointment.sync_detailed(
            booked.id, client=owner, body=Cancellation(reason="A paciente viajou")
        ),
        200,
        "cancel",
    )
    final = expect(get_appointment.sync_detailed(booked.id, client=owner), 200, "read back")
    if final.status != "cancelled":
        sys.exit(f"python scenario: the appointment is {final.status}, not cancelled")
    print(f"python scenario: booked {first.start}, moved to {later.start}, cancelled")


if __name__ == "__main__":
    main(sys.argv[1])
