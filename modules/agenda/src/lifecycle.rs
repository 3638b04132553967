//! The appointment life cycle: its statuses and the only transitions between them.
//!
//! ```text
//! scheduled ──confirm──▶ confirmed
//!     │  ╲                  │
//!     │   ╲──check in──▶ checked_in ──complete──▶ completed
//!     │                     ▲
//!     ├──────check in───────┘ (also from confirmed)
//!     ├── cancel ──▶ cancelled        (scheduled or confirmed)
//!     ├── no-show ─▶ no_show          (scheduled or confirmed, once it has started)
//!     └── reschedule ─▶ scheduled     (scheduled or confirmed: a new time needs a new confirmation)
//! ```
//!
//! `completed`, `cancelled` and `no_show` are final.

/// Where an appointment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Scheduled,
    Confirmed,
    CheckedIn,
    Completed,
    Cancelled,
    NoShow,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Scheduled,
        Status::Confirmed,
        Status::CheckedIn,
        Status::Completed,
        Status::Cancelled,
        Status::NoShow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Confirmed => "confirmed",
            Status::CheckedIn => "checked_in",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
            Status::NoShow => "no_show",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the appointment still keeps its professional and room busy.
    pub fn is_live(self) -> bool {
        self != Status::Cancelled
    }

    /// Whether it is still ahead of the patient (and may be reminded, moved or cancelled).
    pub fn is_upcoming(self) -> bool {
        matches!(self, Status::Scheduled | Status::Confirmed)
    }
}

/// Something done to an appointment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Confirm,
    CheckIn,
    Complete,
    NoShow,
    Cancel,
    Reschedule,
}

impl Action {
    /// The status after `self` from `from`; `None` when the transition is not allowed.
    pub fn next(self, from: Status) -> Option<Status> {
        use Status::*;
        match (self, from) {
            (Action::Confirm, Scheduled) => Some(Confirmed),
            (Action::CheckIn, Scheduled | Confirmed) => Some(CheckedIn),
            (Action::Complete, Scheduled | Confirmed | CheckedIn) => Some(Completed),
            (Action::NoShow, Scheduled | Confirmed) => Some(NoShow),
            (Action::Cancel, Scheduled | Confirmed) => Some(Cancelled),
            (Action::Reschedule, Scheduled | Confirmed) => Some(Scheduled),
            _ => None,
        }
    }

    /// How a refusal names it: "cannot confirm an appointment that is completed".
    pub fn verb(self) -> &'static str {
        match self {
            Action::Confirm => "confirm",
            Action::CheckIn => "check in",
            Action::Complete => "complete",
            Action::NoShow => "mark as no-show",
            Action::Cancel => "cancel",
            Action::Reschedule => "reschedule",
        }
    }

    /// The outbox topic published when it happens.
    pub fn topic(self) -> &'static str {
        match self {
            Action::Confirm => "appointment.confirmed",
            Action::CheckIn => "appointment.checked_in",
            Action::Complete => "appointment.completed",
            Action::NoShow => "appointment.no_show",
            Action::Cancel => "appointment.cancelled",
            Action::Reschedule => "appointment.rescheduled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statuses_accept_nothing() {
        let actions = [
            Action::Confirm,
            Action::CheckIn,
            Action::Complete,
            Action::NoShow,
            Action::Cancel,
            Action::Reschedule,
        ];
        for status in [Status::Completed, Status::Cancelled, Status::NoShow] {
            for action in actions {
                assert_eq!(action.next(status), None, "{action:?} from {status:?}");
            }
        }
    }

    #[test]
    fn the_usual_day_of_an_appointment() {
        let confirmed = Action::Confirm.next(Status::Scheduled).unwrap();
        let arrived = Action::CheckIn.next(confirmed).unwrap();
        assert_eq!(Action::Complete.next(arrived), Some(Status::Completed));
        // Once the patient is in, it can be neither cancelled nor a no-show.
        assert_eq!(Action::Cancel.next(arrived), None);
        assert_eq!(Action::NoShow.next(arrived), None);
        // Moving a confirmed appointment asks for a new confirmation.
        assert_eq!(Action::Reschedule.next(confirmed), Some(Status::Scheduled));
        assert_eq!(Action::Confirm.next(confirmed), None);
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("done"), None);
    }
}
