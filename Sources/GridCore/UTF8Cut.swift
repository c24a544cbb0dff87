/// Where to cut bytes so that a UTF-8 character is not split: a log read in pieces (1 MiB at a time, or as the worker
/// shipped it) split a character at a piece's end, and each piece showed half of it as U+FFFD ("█" of a progress bar
/// became two "�").
public enum UTF8Cut {
    /// The length of `bytes` without a character begun at its end and not finished there (at most 3 bytes shorter).
    /// Bytes that are not UTF-8 at all are left in: they can never be finished.
    public static func completePrefix<C: BidirectionalCollection>(_ bytes: C) -> Int where C.Element == UInt8 {
        var back = 0
        var index = bytes.endIndex
        // Walk back over at most 3 continuation bytes to the byte that leads them.
        while back < 4, index != bytes.startIndex {
            index = bytes.index(before: index)
            back += 1
            let byte = bytes[index]
            if byte & 0b1100_0000 == 0b1000_0000 { continue }  // a continuation byte
            let needed: Int
            switch byte {
            case 0b1100_0000...0b1101_1111: needed = 2
            case 0b1110_0000...0b1110_1111: needed = 3
            case 0b1111_0000...0b1111_0111: needed = 4
            default: return bytes.count  // ASCII, or a byte no character starts with
            }
            return back < needed ? bytes.count - back : bytes.count
        }
        return bytes.count
    }

    /// How much of a piece of a job's log to send now: the whole piece when it reaches the log's end and the job has
    /// ended; otherwise without a character begun at its end (its rest is on its way, and the next read sends it whole),
    /// but never nothing for an ended job (no later byte would finish the character).
    public static func sendable<C: BidirectionalCollection>(_ piece: C, jobEnded: Bool, reachesEnd: Bool) -> Int where C.Element == UInt8 {
        if jobEnded && reachesEnd { return piece.count }
        let cut = completePrefix(piece)
        return cut > 0 || !jobEnded ? cut : piece.count
    }
}
