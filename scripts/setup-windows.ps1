# Windows setup (pip only). Idempotent: safe to run again and again.
#   powershell -ExecutionPolicy Bypass -File scripts\setup-windows.ps1          # a remote receiver
#   powershell -ExecutionPolicy Bypass -File scripts\setup-windows.ps1 rig      # everything (rig, tests, benchmarks)
# Needs Python 3.11+ from python.org or the Microsoft Store (the `py` launcher). sounddevice's and soundfile's
# Windows wheels carry PortAudio (with ASIO off) and libsndfile; pywin32 comes from pip.
# Never run by CI (Linux); see docs/platforms.md for what has and has not run on Windows.
param([ValidateSet("receiver", "rig")][string]$What = "receiver")
$ErrorActionPreference = "Stop"
$root = Split-Path -Parent $PSScriptRoot
Set-Location $root

$venvPython = Join-Path $root ".venv\Scripts\python.exe"
if (-not (Test-Path $venvPython)) {
    $launcher = Get-Command py -ErrorAction SilentlyContinue
    if ($launcher) {
        & py -3 -c "import sys; raise SystemExit(sys.version_info < (3, 11))"
        if ($LASTEXITCODE -ne 0) { Write-Error "setup-windows: Python 3.11 or newer is needed (py -3 is older)"; exit 1 }
        & py -3 -m venv .venv
    } else {
        $python = Get-Command python -ErrorAction SilentlyContinue
        if (-not $python) { Write-Error "setup-windows: install Python 3.11+ from python.org (with the py launcher)"; exit 1 }
        & python -m venv .venv
    }
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
}

$extras = if ($What -eq "rig") { "[rig,test,bench]" } else { "" }
$stamp = Join-Path $root ".venv\.mimir-installed-$What"
$stale = (-not (Test-Path $stamp)) -or ((Get-Item pyproject.toml).LastWriteTime -gt (Get-Item $stamp).LastWriteTime)
if ($stale) {
    & $venvPython -m pip install -q --upgrade pip
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
    & $venvPython -m pip install -q -e ".$extras"
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
    New-Item -ItemType File -Force $stamp | Out-Null
}
Write-Host "setup-windows: ready ($What). Next: .venv\Scripts\mimir doctor"
