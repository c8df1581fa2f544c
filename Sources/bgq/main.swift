import BGQKit

BGQCommand.runAsMain()
