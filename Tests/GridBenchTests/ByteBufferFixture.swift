import NIOCore

enum ByteBufferFixture {
    static func make(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
}
