// A clinic's first booking, through a TypeScript client made from openapi/harmony.json:
// types by openapi-typescript (generated into openapi/clients/ts by scripts/api-checks),
// calls by openapi-fetch. `tsc --noEmit` checks this file against those types first.
//
//   npx tsx scenario.ts BASE_URL
//
// Signs up a clinic, invites a professional who accepts, sets her working hours, adds a
// service and a patient, finds a free time, books it, reschedules it and cancels it.

import createClient from "openapi-fetch";
import type { paths } from "../clients/ts/harmony";

const base = process.argv[2];
if (!base) throw new Error("usage: tsx scenario.ts BASE_URL");
const run = Math.random().toString(16).slice(2, 10);

function expect<T>(
  what: string,
  status: number,
  answer: { data?: T; error?: unknown; response: Response },
): T {
  if (answer.response.status !== status || answer.data === undefined) {
    throw new Error(
      `${what}: ${answer.response.status} ${JSON.stringify(answer.error)}`,
    );
  }
  return answer.data;
}

const anonymous = createClient<paths>({ baseUrl: base });

const signedUp = expect(
  "sign up",
  201,
  await anonymous.POST("/api/v1/auth/signup", {
    body: {
      clinic: { name: `Clínica TypeScript ${run}` },
      owner: {
        name: "Dona TypeScript",
        email: `dona-${run}@typescript.test`,
        password: "uma senha bem longa",
      },
    },
  }),
);
const owner = createClient<paths>({
  baseUrl: base,
  headers: { Authorization: `Bearer ${signedUp.tokens.access_token}` },
});

const invited = expect(
  "invite a professional",
  201,
  await owner.POST("/api/v1/members", {
    body: {
      email: `pro-${run}@typescript.test`,
      name: "Dra. TypeScript",
      roles: ["professional"],
    },
  }),
);
expect(
  "accept the invitation",
  200,
  await anonymous.POST("/api/v1/auth/accept-invitation", {
    body: {
      token: invited.invitation_token ?? "",
      password: "outra senha bem longa",
    },
  }),
);
const professional = invited.member.user_id;

const week = [1, 2, 3, 4, 5, 6].map((weekday) => ({
  weekday,
  starts_at: "08:00",
  ends_at: "18:00",
}));
expect(
  "set working hours",
  200,
  await owner.PUT("/api/v1/professionals/{id}/working-hours", {
    params: { path: { id: professional } },
    body: { intervals: week },
  }),
);
const service = expect(
  "add a service",
  201,
  await owner.POST("/api/v1/services", {
    body: {
      name: "Drenagem linfática",
      category: "body",
      duration_minutes: 50,
      price_cents: 16000,
      professional_ids: [professional],
    },
  }),
);
const patient = expect(
  "register a patient",
  201,
  await owner.POST("/api/v1/patients", {
    body: { full_name: "Tatiana Tipada", phone: "+55 11 96666-4321" },
  }),
);

const day = (offset: number) =>
  new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
const free = expect(
  "find availability",
  200,
  await owner.GET("/api/v1/availability", {
    params: {
      query: {
        service_ids: service.id,
        from: day(2),
        to: day(16),
        professional_id: professional,
      },
    },
  }),
);
if (free.slots.length < 2) {
  throw new Error(`expected free times, got ${free.slots.length}`);
}
const first = free.slots[0];
const later = free.slots[free.slots.length - 1];

const booked = expect(
  "book",
  201,
  await owner.POST("/api/v1/appointments", {
    body: {
      patient_id: patient.id,
      service_ids: [service.id],
      professional_id: professional,
      start: first.start,
    },
  }),
);
const moved = expect(
  "reschedule",
  200,
  await owner.POST("/api/v1/appointments/{id}/reschedule", {
    params: { path: { id: booked.id } },
    body: { start: later.start },
  }),
);
if (Date.parse(moved.start) !== Date.parse(later.start)) {
  throw new Error(`rescheduled to ${moved.start}, asked ${later.start}`);
}
expect(
  "cancel",
  200,
  await owner.POST("/api/v1/appointments/{id}/cancel", {
    params: { path: { id: booked.id } },
    body: { reason: "A paciente viajou" },
  }),
);
const final = expect(
  "read back",
  200,
  await owner.GET("/api/v1/appointments/{id}", {
    params: { path: { id: booked.id } },
  }),
);
if (final.status !== "cancelled") {
  throw new Error(`the appointment is ${final.status}, not cancelled`);
}
console.log(
  `typescript scenario: booked ${first.start}, moved to ${later.start}, cancelled`,
);
