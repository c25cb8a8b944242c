/**
 * What an administrator sees at enrollment: the kit fingerprint to note down and, for TOTP, the otpauth:// URI and
 * a QR code to scan in the terminal. The URI holds the TOTP seed: this text goes to the administrator's terminal
 * only, never to a log or a file.
 */
import QRCode from "qrcode";

export async function renderTotpEnrollment(uri: string): Promise<string> {
  const qr = await QRCode.toString(uri, { type: "terminal", small: true, errorCorrectionLevel: "M" });
  return [
    "Scan this code with your authenticator app (or enter the URI). It is shown once:",
    "",
    qr.trimEnd(),
    "",
    uri,
  ].join("\n");
}

export function renderKitIssued(
  kit: { kitVersion: number; fingerprint: string },
  workspaceId: string,
): string {
  return [
    `Recovery kit v${kit.kitVersion} of workspace ${workspaceId} is in the vault.`,
    `Fingerprint: ${kit.fingerprint}`,
    "Write the fingerprint down with your passphrase: you will compare it when you acknowledge or use the kit.",
  ].join("\n");
}
