/// An account in the double-entry credit ledger.
///
/// Every movement of credits is one row naming a debit and a credit account. Balances are derived by summing rows.
/// Sign-ups move credits out of `mint`, so the sum over every other account always equals what was minted.
public enum LedgerAccount: Hashable, Sendable, CustomStringConvertible {
    /// Where sign-up credits come from; its balance is minus everything ever minted.
    case mint
    /// A user's spendable balance.
    case user(UserID)
    /// Credits held for a job between submission and settlement.
    case hold(JobID)
    /// A worker owner's earnings for a run under check, kept until the check decides (released to the owner when the
    /// run agrees, forfeited to the fund when it is contradicted).
    case escrow(JobID)
    /// The verification fund: a share of every payment; pays for spot checks and probation runs.
    case fund

    public var description: String {
        switch self {
        case .mint: "mint"
        case .user(let id): "user:\(id)"
        case .hold(let id): "hold:\(id)"
        case .escrow(let id): "escrow:\(id)"
        case .fund: "fund"
        }
    }

    public init?(_ text: String) {
        if text == "mint" {
            self = .mint
        } else if text.hasPrefix("user:"), let id = Int64(text.dropFirst(5)) {
            self = .user(id)
        } else if text.hasPrefix("hold:"), let id = Int64(text.dropFirst(5)) {
            self = .hold(id)
        } else if text.hasPrefix("escrow:"), let id = Int64(text.dropFirst(7)) {
            self = .escrow(id)
        } else if text == "fund" {
            self = .fund
        } else {
            return nil
        }
    }
}
