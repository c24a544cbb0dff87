import Hummingbird
import HummingbirdBcrypt
import GRDB
import NIOPosix
import Crypto
import ServiceLifecycle
