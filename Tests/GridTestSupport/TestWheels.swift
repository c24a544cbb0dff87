import Foundation

/// Tiny pure-Python packages written by hand into a folder, for hermetic tests of jobs' environments: a worker
/// started with `--no-index --find-links FOLDER` installs them without any network.
public enum TestWheels {
    /// Writes `NAME-VERSION-py3-none-any.whl` (a module `module` whose source is `source`) into `folder`.
    public static func wheel(in folder: String, name: String, version: String = "1.0", module: String, source: String) throws {
        try python(
            """
            import base64, hashlib, os, sys, zipfile
            folder, name, version, module, source = sys.argv[1:6]
            dist = name.replace('-', '_')
            info = f'{dist}-{version}.dist-info'
            files = {
                f'{module}.py': source.encode(),
                f'{info}/METADATA': f'Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n'.encode(),
                f'{info}/WHEEL': b'Wheel-Version: 1.0\\nGenerator: campusgrid-tests\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n',
            }
            record = ''
            for path, data in files.items():
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
                record += f'{path},sha256={digest},{len(data)}\\n'
            record += f'{info}/RECORD,,\\n'
            files[f'{info}/RECORD'] = record.encode()
            os.makedirs(folder, exist_ok=True)
            with zipfile.ZipFile(os.path.join(folder, f'{dist}-{version}-py3-none-any.whl'), 'w') as z:
                for path, data in files.items():
                    z.writestr(path, data)
            """, [folder, name, version, module, source])
    }

    /// Writes a source distribution `NAME-VERSION.tar.gz` (no wheel) into `folder`.
    public static func sdist(in folder: String, name: String, version: String = "1.0", module: String, source: String) throws {
        try python(
            """
            import io, os, sys, tarfile
            folder, name, version, module, source = sys.argv[1:6]
            dist = name.replace('-', '_')
            base = f'{dist}-{version}'
            files = {
                f'{base}/pyproject.toml': f'[build-system]\\nrequires = []\\nbuild-backend = "setuptools.build_meta"\\n'.encode(),
                f'{base}/setup.py': f'from setuptools import setup\\nsetup(name="{name}", version="{version}", py_modules=["{module}"])\\n'.encode(),
                f'{base}/{module}.py': source.encode(),
                f'{base}/PKG-INFO': f'Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n'.encode(),
            }
            os.makedirs(folder, exist_ok=True)
            with tarfile.open(os.path.join(folder, f'{base}.tar.gz'), 'w:gz') as t:
                for path, data in files.items():
                    info = tarfile.TarInfo(path)
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
            """, [folder, name, version, module, source])
    }

    /// Writes a source distribution `NAME-1.0.tar.gz` whose build backend is `backend` (Python source, in the sdist:
    /// `backend-path = ["."]`, no build requirements): the code a build runs, for tests of the build sandbox.
    /// `wheelFor(module:source:)` gives a `build_wheel` helper the backend may call.
    public static func sdistWithBackend(in folder: String, name: String, backend: String) throws {
        try python(
            """
            import io, os, sys, tarfile
            folder, name, backend = sys.argv[1:4]
            base = f"{name.replace('-', '_')}-1.0"
            files = {
                f'{base}/pyproject.toml': b'[build-system]\\nrequires = []\\nbuild-backend = "grid_backend"\\nbackend-path = ["."]\\n',
                f'{base}/grid_backend.py': backend.encode(),
                f'{base}/PKG-INFO': f'Metadata-Version: 2.1\\nName: {name}\\nVersion: 1.0\\n'.encode(),
            }
            os.makedirs(folder, exist_ok=True)
            with tarfile.open(os.path.join(folder, f'{base}.tar.gz'), 'w:gz') as t:
                for path, data in files.items():
                    info = tarfile.TarInfo(path)
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
            """, [folder, name, backend])
    }

    /// Python source of a `write_wheel(wheel_directory, name, module, source)` function for a build backend.
    public static let writeWheelFunction = """
        import base64, hashlib, os, zipfile
        def write_wheel(wheel_directory, name, module, source):
            dist = name.replace('-', '_')
            info = f'{dist}-1.0.dist-info'
            files = {
                f'{module}.py': source.encode(),
                f'{info}/METADATA': f'Metadata-Version: 2.1\\nName: {name}\\nVersion: 1.0\\n'.encode(),
                f'{info}/WHEEL': b'Wheel-Version: 1.0\\nGenerator: campusgrid-tests\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n',
            }
            record = ''
            for path, data in files.items():
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
                record += f'{path},sha256={digest},{len(data)}\\n'
            files[f'{info}/RECORD'] = (record + f'{info}/RECORD,,\\n').encode()
            filename = f'{dist}-1.0-py3-none-any.whl'
            with zipfile.ZipFile(os.path.join(wheel_directory, filename), 'w') as z:
                for path, data in files.items():
                    z.writestr(path, data)
            return filename

        """

    static func python(_ program: String, _ arguments: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestPython.path)
        p.arguments = ["-c", program] + arguments
        let err = Pipe()
        p.standardError = err
        try p.run()
        let message = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw TestGridError("could not write a test package: \(String(decoding: message, as: UTF8.self))")
        }
    }
}
