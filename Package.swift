// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "campusgrid",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "campusgrid", targets: ["campusgrid"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", exact: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", exact: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", exact: "1.7.4"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // Pure layers: no I/O.
        .target(name: "GridCore", swiftSettings: swiftSettings),
        .target(
            name: "GridProtocol",
            dependencies: [
                "GridCore", .product(name: "NIOCore", package: "swift-nio"), .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"), .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(name: "GridScheduler", dependencies: ["GridCore"], swiftSettings: swiftSettings),
        .target(name: "GridPeer", dependencies: ["GridCore"], swiftSettings: swiftSettings),

        // I/O shells.
        .target(
            name: "GridStore",
            dependencies: [
                "GridCore", "GridScheduler", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(name: "CGridSpawn"),
        .target(
            name: "GridSandbox",
            dependencies: ["GridCore", "CGridSpawn", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GridHTTP",
            dependencies: [
                "GridProtocol", .product(name: "HummingbirdCore", package: "hummingbird"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GridManager",
            dependencies: [
                "GridCore", "GridProtocol", "GridScheduler", "GridStore", "GridHTTP",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            resources: [.copy("Web")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GridWorker",
            dependencies: [
                "GridCore", "GridProtocol", "GridSandbox", "GridPeer", "GridClient", "GridHTTP",
                .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GridClient",
            dependencies: [
                "GridCore", "GridPeer", "GridProtocol",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GridBench",
            dependencies: [
                "GridCore", "GridClient", "GridProtocol", "GridScheduler", "GridStore", "GridSandbox",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "campusgrid",
            dependencies: [
                "GridCore", "GridManager", "GridWorker", "GridClient", "GridStore", "GridProtocol", "GridBench", "GridSandbox", "GridScheduler", "GridPeer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // Tests.
        .target(
            name: "GridTestSupport",
            dependencies: [
                "GridCore", "GridClient", "GridProtocol", "GridSandbox", "GridManager", "GridWorker", "GridScheduler", "GridHTTP",
                .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/GridTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "GridCoreTests", dependencies: ["GridCore"], swiftSettings: swiftSettings),
        .testTarget(
            name: "GridProtocolTests",
            dependencies: [
                "GridProtocol", "GridCore", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"), .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "GridSchedulerTests", dependencies: ["GridScheduler", "GridCore"], swiftSettings: swiftSettings),
        .testTarget(
            name: "GridStoreTests", dependencies: ["GridStore", "GridCore", "GridScheduler", "GridTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "GridPeerTests", dependencies: ["GridPeer", "GridCore", "GridProtocol", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "GridPeerIntegrationTests",
            dependencies: [
                "GridCore", "GridProtocol", "GridClient", "GridTestSupport", "GridPeer", "GridSandbox",
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"), .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GridBenchTests",
            dependencies: ["GridBench", "GridTestSupport", "GridSandbox", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GridSandboxTests", dependencies: ["GridCore", "GridSandbox", "GridTestSupport", "CGridSpawn"], swiftSettings: swiftSettings),
        .testTarget(
            name: "GridSandboxIntegrationTests", dependencies: ["GridCore", "GridClient", "GridTestSupport", "GridSandbox"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "GridManagerTests",
            dependencies: [
                "GridCore", "GridManager", "GridProtocol", "GridStore", "GridScheduler", "GridHTTP",
                .product(name: "HummingbirdTesting", package: "hummingbird"), .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"), .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GridDashboardTests",
            dependencies: ["GridCore", "GridClient", "GridStore", "GridScheduler", "GridTestSupport", "GridSandbox"],
            exclude: ["browser_flow.py", "browser_verification.py"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GridInProcessTests",
            dependencies: [
                "GridCore", "GridClient", "GridManager", "GridPeer", "GridProtocol", "GridSandbox", "GridScheduler", "GridWorker", "GridTestSupport",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: swiftSettings),
        .testTarget(
            name: "GridIntegrationTests",
            dependencies: [
                "GridCore", "GridProtocol", "GridClient", "GridTestSupport", "GridSandbox",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
