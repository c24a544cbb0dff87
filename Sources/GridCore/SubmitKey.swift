/// An idempotency key on a job submission (`Idempotency-Key` on `POST /api/v1/jobs`): one per logical submission,
/// chosen by the client and sent again, unchanged, with every retry of it. A retry whose first answer was lost (the
/// manager died after committing, a loaded manager answered after the client gave up) then finds the job the first
/// attempt made instead of making, and charging, a second one.
///
/// Keys are scoped to their owner: another user's identical key is a different submission. A key is kept for the
/// life of its job row. The decision about a submission with a key is here, pure, because it is a decision about money.
public enum SubmitKey {
    /// The longest key accepted (a UUID is 36; room for a client's own scheme).
    public static let maxLength = 128

    /// The key as sent, checked: 1–128 characters from `A–Z a–z 0–9 - _ . :`. Anything else is refused with the reason,
    /// naming the key as its sender knows it (`field`: the header, or `--key` on the command line).
    public static func validate(_ raw: String, field: String = "the Idempotency-Key header") throws -> String {
        guard !raw.isEmpty else { throw GridError(.badRequest, "\(field) is empty") }
        guard raw.utf8.count <= maxLength else {
            throw GridError(.badRequest, "\(field) is longer than \(maxLength) characters")
        }
        for byte in raw.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"):
                continue
            default:
                throw GridError(.badRequest, "\(field) may hold only letters, digits and - _ . :")
            }
        }
        return raw
    }

    /// What to do with a submission carrying a key.
    public enum Decision: Hashable, Sendable {
        /// No job of this owner has the key: make the job (and hold its cost).
        case create
        /// The same submission again: answer with job `id`, charge nothing more.
        case replay(id: Int64)
        /// The key names another submission of this owner (a different script, inputs or spec): refuse it, charge nothing.
        case conflict(id: Int64)
    }

    /// `existing`: the owner's job already holding the key and the digest of the submission that made it, if any;
    /// `digest`: this submission's. Digests are compared whole; an existing row without one (damaged) never replays.
    public static func decide(existing: (id: Int64, digest: String?)?, digest: String) -> Decision {
        guard let existing else { return .create }
        guard let stored = existing.digest, !digest.isEmpty, stored == digest else { return .conflict(id: existing.id) }
        return .replay(id: existing.id)
    }
}
